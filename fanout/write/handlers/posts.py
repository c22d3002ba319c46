"""Posts: a new post stored and delivered (pushed inline, in chunk tasks, or not at all), and deletes."""

from __future__ import annotations

import asyncio

from fanout.core import plans
from fanout.core.events import InboxChunk, PostCreated, PostDeleted
from fanout.write.executor import Executor


class PostHandlers:
    def __init__(self, executor: Executor) -> None:
        self.x = executor

    async def post_created(self, e: PostCreated) -> None:
        await self.x.run(plans.post_created(e, await self._facts(e), self.x.settings))

    async def _facts(self, e: PostCreated) -> plans.PostFacts:
        """The author's stats (from the worker's cache, fanout/adapters/author_cache.py), the post as stored
        by an earlier try, and the author's active followers if the post is pushed. The audience is listed at
        the same time as the stored post is read whenever the post will most likely be pushed (a replayed
        post stored as pulled is the rare case that lists it for nothing)."""
        x, s = self.x, self.x.settings
        stats = await x.stores.graph.author_stats(e.author_id)
        since = plans.audience_since(e, s)
        likely = plans.needs_audience(stats, None, s)
        stored, audience = await asyncio.gather(
            x.stores.posts.stored_post(e.post_id),
            x.audience(e.author_id, since, stats.follower_count, s.lossy_follows) if likely else _none())
        if audience is None and plans.needs_audience(stats, stored, s):
            audience = await x.audience(e.author_id, since, stats.follower_count, s.lossy_follows)
        if audience is None:
            return plans.PostFacts(stats, stored, None)
        return plans.PostFacts(stats, stored, tuple(audience[0]), audience[1])

    async def inbox_chunk(self, task: InboxChunk) -> None:
        await self.x.run(plans.inbox_chunk(task))

    async def post_deleted(self, e: PostDeleted) -> None:
        stored = (await self.x.stores.posts.posts([e.post_id])).get(e.post_id)
        await self.x.run(plans.post_deleted(e, stored))


async def _none() -> tuple[list[int], dict[int, int]] | None:
    return None
