"""Readers' activity: a feed read keeps a reader's edges active, and rebuilds a returning reader's inbox. A
reader following more than a chunk of accounts, or returning, is handled in chunk tasks (SeenChunk), so
no single feed read holds its partition for long."""

from __future__ import annotations

from fanout.core import plans
from fanout.core.events import SeenChunk
from fanout.write.executor import Executor


class ReaderHandlers:
    def __init__(self, executor: Executor) -> None:
        self.x = executor

    async def user_seen(self, user_id: int, event_time: int) -> None:
        activity = await self.x.stores.readers.activity(user_id)
        await self.x.run(plans.user_seen(user_id, activity, event_time, self.x.settings))

    async def seen_chunk(self, task: SeenChunk) -> None:
        await self.x.run(plans.seen_chunk(task))
