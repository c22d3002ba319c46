"""Readers' activity: a feed read keeps a reader's edges active, and rebuilds a returning reader's inbox. A
reader following more than a chunk of accounts, or returning, is handled in chunk tasks (SeenChunk), so
no single feed read holds its partition for long."""

from __future__ import annotations

import asyncio

from fanout.core.events import SeenChunk
from fanout.core.model import Activity
from fanout.core.policy import plan_seen
from fanout.core.ports import bulk_work
from fanout.write.handlers.delivery import Delivery

REGEN_CONCURRENCY = 8  # followees' timelines copied at once while rebuilding a returning user's inbox


class ReaderHandlers:
    def __init__(self, delivery: Delivery) -> None:
        self.d = delivery

    async def user_seen(self, user_id: int, event_time: int) -> None:
        """A feed read. Every user's edges carry a recent last_seen so pushes reach them; a user back after
        FANOUT_ACTIVE_DAYS also gets their inbox rebuilt from the timelines of the accounts they follow."""
        d, readers = self.d, self.d.stores.readers
        plan = plan_seen(await readers.activity(user_id), event_time, d.settings)
        if plan is None:
            return  # recent enough: nothing to refresh
        if plan.returning:
            d.metrics.regenerations.labels("started").inc()
        # Recorded before the followees are listed (see GraphHandlers.follow_changed); a returning user is
        # flagged so reads keep pulling until the rebuild is done.
        await readers.set_activity(user_id, Activity(plan.seen, plan.returning))
        followees = await d.stores.graph.following(user_id, limit=10**6)
        if not plan.returning and len(followees) <= d.settings.chunk_size:
            await d.stores.graph.set_edges_seen(user_id, followees, plan.seen)  # most readers: no task
            return
        if not followees:
            await self._rebuilt(user_id, plan.seen)
            return
        # Every followee, however many (a cap on a rebuild would leave the rest out of the inbox for good),
        # in chunk tasks keyed by the reader, on one partition of the chunks topic, each between other tasks,
        # so no feed read holds its partition for longer than a list of its followees.
        # A rebuild's chunks are smaller (FANOUT_REBUILD_CHUNK_AUTHORS): each followee costs a timeline read.
        size = d.settings.rebuild_chunk_authors if plan.returning else d.settings.chunk_size
        chunks = d.slices(followees, size)
        tasks = [SeenChunk(event_time=event_time, user_id=user_id, author_ids=chunk, seen=plan.seen,
                           rebuild=plan.returning, chunk=n, chunks=len(chunks)) for n, chunk in enumerate(chunks)]
        # The last chunk ends a rebuild, so it is sent once Kafka holds every other: after them on the
        # reader's partition. The others together: the order among them does not matter.
        await asyncio.gather(*(d.send_task(t) for t in tasks[:-1]))
        await d.send_task(tasks[-1])

    async def seen_chunk(self, task: SeenChunk) -> None:
        """One chunk of a feed read's followees: the reader's edges to them first (pushes resume, so nothing
        posted meanwhile is missed), then, for a returning reader, their recent posts into the inbox."""
        d = self.d
        await d.stores.graph.set_edges_seen(task.user_id, task.author_ids, task.seen)
        if not task.rebuild:
            return
        celebrities = set(await d.stores.readers.celebrities(task.user_id))  # pulled at read time, not copied
        slots = asyncio.Semaphore(REGEN_CONCURRENCY)

        async def rebuild_from(author: int) -> None:
            async with slots:
                await d.backfill([task.user_id], author)

        with bulk_work():  # the rows of posts handled meanwhile go first, as for fan-out chunks
            await asyncio.gather(*(rebuild_from(a) for a in task.author_ids if a not in celebrities))
        if task.chunk == task.chunks - 1:
            await self._rebuilt(task.user_id, task.seen)

    async def _rebuilt(self, user_id: int, seen: int) -> None:
        await self.d.stores.readers.set_activity(user_id, Activity(seen, False))
        self.d.metrics.regenerations.labels("finished").inc()
