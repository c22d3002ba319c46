"""Follows and unfollows, and the tasks they set off: celebrity-set changes and inbox purges."""

from __future__ import annotations

from collections.abc import Sequence

from fanout.core import plans
from fanout.core.events import CelebrityChunk, DemotionChunk, InboxPurge
from fanout.write.executor import Executor


class GraphHandlers:
    def __init__(self, executor: Executor, seen_concurrently: bool = True) -> None:
        """`seen_concurrently`: whether a follower's UserSeen may be handled while its follow is (by another
        batch group or worker), which the activity re-read after each run's last commit guards against. The
        bulk import runs with the workers stopped (README), so it passes False and skips that read."""
        self.x = executor
        self.seen_concurrently = seen_concurrently

    async def follow_changed(self, author_id: int, follower_id: int, following: bool, event_time: int) -> None:
        """Apply a follow or unfollow; a stale or repeated one (not newer than the edge) changes nothing."""
        await self.follows_changed(author_id, [(follower_id, following, event_time)])

    async def follows_changed(self, author_id: int, changes: Sequence[plans.Change]) -> None:
        """Apply the author's consecutive follows and unfollows of a batch of events, in order, as if one at a
        time (plans.follows_changed)."""
        await self.x.run(plans.follows_changed(author_id, changes, await self._facts(author_id, changes),
                                               self.x.settings, self.seen_concurrently, self.x.announces))

    async def _facts(self, author_id: int, changes: Sequence[plans.Change]) -> plans.FollowFacts:
        """One after the other, not gathered: each read is coalesced with the other runs' (the adapter's
        loaders), so a batch pays a round trip more, while a task per read (three per run, most runs one
        follow long) cost the worker's event loop more than the reads. The author's stats come from the
        worker's cache, mostly."""
        graph, readers = self.x.stores.graph, self.x.stores.readers
        stats = await graph.author_stats(author_id)
        edges = await graph.edges(author_id, (f for f, _, _ in changes))
        activities = await readers.activities({f for f, following, _ in changes if following})
        return plans.FollowFacts(stats, edges, activities, self.x.clock_ms())

    async def promoted(self, task: CelebrityChunk) -> None:
        await self.x.run(plans.promoted(task))

    async def demoted(self, task: DemotionChunk) -> None:
        await self.x.run(plans.demoted(task))

    async def purge(self, task: InboxPurge) -> None:
        hidden = await self.x.stores.readers.hidden_authors(task.user_id)
        await self.x.run(plans.purge(task.user_id, task.author_id, task.as_of_us, hidden))
