"""The worker's cache of author facts (follower count, tier, version): exact while the worker owns the author.

Every post needs its author's stats, and reading them was one of the ~six requests each post paid before its
first inbox row. Only the worker that owns an author's Kafka partition writes that author's stats (the
follow handler's commit, `set_edges`), in the order it decides them, each with a version one higher. So
while it owns the partition, the stats it last read or wrote itself ARE the stored stats, and a cache of
them is exact, not merely fresh enough:

- filled by a read, and replaced by each commit of the worker's own once the commit is written;
- forgotten for an author whose commit failed (it may or may not have been applied);
- forgotten entirely when partitions are revoked or assigned (`clear`, wired to Faust's rebalance signals),
  so a second worker taking an author over, or this one taking it back later, reads the stored stats. A
  read or commit that started before a `clear` does not fill the cache after it (the generation check).
- A replay (a restarted worker) starts with an empty cache.

Another process that writes stats meanwhile (`fanout import follows` while workers serve the same authors)
breaks the premise: import while the workers are stopped, or before they first start.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import cachetools

from fanout.core.model import AuthorStats, Edge, EdgeChange, FollowerPage
from fanout.core.ports import GraphStore

MAX_AUTHORS = 200_000  # beyond this the least recently used are dropped (a dropped entry is read again)


class AuthorStatsCache:
    """A GraphStore whose `author_stats` answers from memory; every other call goes to the store."""

    def __init__(self, graph: GraphStore, max_authors: int = MAX_AUTHORS) -> None:
        self.graph = graph
        self.generation = 0  # bumped by `clear`: a fill started before it is dropped
        self._stats: cachetools.LRUCache[int, AuthorStats] = cachetools.LRUCache(max_authors)
        self.hits = self.misses = 0

    def clear(self) -> None:
        """Forget everything (partitions were revoked or assigned)."""
        self.generation += 1
        self._stats.clear()

    def _remember(self, author_id: int, stats: AuthorStats, generation: int) -> None:
        if generation != self.generation:
            return
        self._stats[author_id] = stats

    async def author_stats(self, author_id: int) -> AuthorStats:
        cached = self._stats.get(author_id)
        if cached is not None:
            self.hits += 1
            return cached
        self.misses += 1
        generation = self.generation
        stats = await self.graph.author_stats(author_id)
        self._remember(author_id, stats, generation)
        return stats

    async def set_edge(self, author_id: int, follower_id: int, edge: Edge, stats: AuthorStats,
                       last_seen: int | None = None) -> None:
        await self.set_edges(author_id, [EdgeChange(follower_id, edge, last_seen)], stats)

    async def set_edges(self, author_id: int, changes: Sequence[EdgeChange], stats: AuthorStats) -> None:
        generation = self.generation
        try:
            await self.graph.set_edges(author_id, changes, stats)
        except BaseException:
            self._stats.pop(author_id, None)
            raise
        self._remember(author_id, stats, generation)

    async def edge(self, author_id: int, follower_id: int) -> Edge | None:
        return await self.graph.edge(author_id, follower_id)

    async def edges(self, author_id: int, follower_ids: Iterable[int]) -> dict[int, Edge]:
        return await self.graph.edges(author_id, follower_ids)

    async def set_following(self, user_id: int, followee_id: int, following: bool, event_time: int) -> None:
        await self.graph.set_following(user_id, followee_id, following, event_time)

    async def set_followings(self, changes: Iterable[tuple[int, int, bool, int]]) -> None:
        await self.graph.set_followings(changes)

    async def followers_page(self, author_id: int, after: int, limit: int,
                             seen_since: int | None = None, over_follows: int = 0) -> FollowerPage:
        return await self.graph.followers_page(author_id, after, limit, seen_since, over_follows)

    async def following(self, user_id: int, limit: int) -> list[int]:
        return await self.graph.following(user_id, limit)

    async def following_count(self, user_id: int) -> int:
        return await self.graph.following_count(user_id)

    async def set_edges_seen(self, user_id: int, followees: Iterable[int], last_seen: int, follows: int = 0) -> None:
        await self.graph.set_edges_seen(user_id, followees, last_seen, follows)
