"""Readers' activity: a feed read keeps a reader's edges active, and rebuilds a returning reader's inbox."""

from __future__ import annotations

import asyncio

from fanout.handlers.delivery import Delivery
from fanout.model import Activity
from fanout.policy import plan_seen

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
        # Every followee, however many: a cap here would leave the rest out of the rebuilt inbox for good.
        celebrities = set(await readers.celebrities(user_id))
        authors = [a for a in followees if a not in celebrities]
        slots = asyncio.Semaphore(REGEN_CONCURRENCY)

        async def rebuild_from(author: int) -> None:
            async with slots:
                await d.backfill([user_id], author)

        await asyncio.gather(*(rebuild_from(a) for a in authors))
        await readers.set_activity(user_id, Activity(plan.seen, False))
        d.metrics.regenerations.labels("finished").inc()
