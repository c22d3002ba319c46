"""Readers' activity: a feed read keeps a reader's edges active, and rebuilds a returning reader's inbox in
chunk tasks (InboxRebuild), so no single event holds its partition for the whole rebuild."""

from __future__ import annotations

import asyncio

from fanout.events import InboxRebuild
from fanout.handlers.delivery import Delivery
from fanout.model import Activity
from fanout.policy import plan_seen
from fanout.ports import bulk_work

REGEN_CONCURRENCY = 8  # followees' timelines copied at once while rebuilding a returning user's inbox


class ReaderHandlers:
    def __init__(self, delivery: Delivery) -> None:
        self.d = delivery

    async def user_seen(self, user_id: int, event_time: int) -> None:
        """A feed read. A user back after FANOUT_ACTIVE_DAYS gets their inbox rebuilt from the timelines
        of the accounts they follow; every user's edges carry a recent last_seen so pushes reach them."""
        d, readers = self.d, self.d.stores.readers
        plan = plan_seen(await readers.activity(user_id), event_time, d.settings)
        if plan is None:
            return  # recent enough: nothing to refresh
        if plan.returning:
            d.metrics.regenerations.labels("started").inc()
        # Recorded before the followees are listed (see GraphHandlers.follow_changed); a returning user is
        # flagged so reads keep pulling until the rebuild below is done.
        await readers.set_activity(user_id, Activity(plan.seen, plan.returning))
        followees = await d.stores.graph.following(user_id, limit=10**6)
        # Pushes resume first, so nothing posted during the rebuild is missed.
        await d.stores.graph.set_edges_seen(user_id, followees, plan.seen)
        if not plan.returning:
            return
        # Every followee, however many: a cap here would leave the rest out of the rebuilt inbox for good. In
        # chunks of FANOUT_REBUILD_CHUNK_AUTHORS, keyed by the reader: they run in order, on one partition of
        # the chunks topic, each between other tasks, and the last one ends the rebuild.
        celebrities = set(await readers.celebrities(user_id))
        authors = [a for a in followees if a not in celebrities]
        chunks = d.slices(authors, d.settings.rebuild_chunk_authors)
        if not chunks:
            await self._rebuilt(user_id, plan.seen)
            return
        for n, chunk in enumerate(chunks):  # one after the other: the order they are to run in
            await d.send_task(InboxRebuild(event_time=event_time, user_id=user_id, author_ids=chunk,
                                           seen=plan.seen, chunk=n, chunks=len(chunks)))

    async def rebuild(self, task: InboxRebuild) -> None:
        """One chunk of a returning reader's rebuild: the recent posts of these followees into the inbox."""
        slots = asyncio.Semaphore(REGEN_CONCURRENCY)

        async def rebuild_from(author: int) -> None:
            async with slots:
                await self.d.backfill([task.user_id], author)

        with bulk_work():  # the rows of posts handled meanwhile go first, as for fan-out chunks
            await asyncio.gather(*(rebuild_from(a) for a in task.author_ids))
        if task.chunk == task.chunks - 1:
            await self._rebuilt(task.user_id, task.seen)

    async def _rebuilt(self, user_id: int, seen: int) -> None:
        await self.d.stores.readers.set_activity(user_id, Activity(seen, False))
        self.d.metrics.regenerations.labels("finished").inc()
