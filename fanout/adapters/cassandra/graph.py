"""The follow graph (schemas/cql/001_tables.cql: followers_by_author, following_by_user).

Edges carry USING TIMESTAMP = event time (µs), so a replayed or late follow/unfollow resolves
last-writer-wins by event time. The author's count, tier and version are static columns of its
followers partition, written with the edge in one single-partition batch: atomic, and written only by
the worker that owns the author's Kafka partition.
"""

from __future__ import annotations

from collections.abc import Iterable

from cassandra.query import BatchStatement, BatchType

from fanout.adapters.cassandra.session import Cassandra, micros
from fanout.model import AuthorStats, Edge, FollowerPage

FOLLOWING_PAGE = 1000


class CassandraGraph:
    def __init__(self, db: Cassandra, write_window: int) -> None:
        self.db = db
        self.window = write_window
        p = db.prepare
        self._stats = p("SELECT follower_count, is_celebrity, version FROM {keyspace}.followers_by_author "
                        "WHERE author_id = ? LIMIT 1")
        self._edge = p("SELECT following, changed_at FROM {keyspace}.followers_by_author "
                       "WHERE author_id = ? AND follower_id = ?")
        self._set_edge = p("UPDATE {keyspace}.followers_by_author USING TIMESTAMP ? "
                           "SET following = ?, changed_at = ? WHERE author_id = ? AND follower_id = ?")
        self._set_stats = p("UPDATE {keyspace}.followers_by_author SET follower_count = ?, is_celebrity = ?, "
                            "version = ? WHERE author_id = ?")
        self._followers = p("SELECT follower_id, following, last_seen FROM {keyspace}.followers_by_author "
                            "WHERE author_id = ? AND follower_id > ? LIMIT ?")
        self._set_edge_seen = p("UPDATE {keyspace}.followers_by_author SET last_seen = ? "
                                "WHERE author_id = ? AND follower_id = ?")
        self._following = p("SELECT followee_id, following FROM {keyspace}.following_by_user "
                            "WHERE user_id = ? AND followee_id > ? LIMIT ?")
        self._set_following = p("UPDATE {keyspace}.following_by_user USING TIMESTAMP ? SET following = ? "
                                "WHERE user_id = ? AND followee_id = ?")

    async def author_stats(self, author_id: int) -> AuthorStats:
        rows = await self.db.run(self._stats, (author_id,))
        if not rows:
            return AuthorStats(0, False)
        return AuthorStats(rows[0].follower_count or 0, bool(rows[0].is_celebrity), rows[0].version or 0)

    async def edge(self, author_id: int, follower_id: int) -> Edge | None:
        rows = await self.db.run(self._edge, (author_id, follower_id))
        if not rows or rows[0].changed_at is None:
            return None
        return Edge(bool(rows[0].following), rows[0].changed_at)

    async def set_edge(self, author_id: int, follower_id: int, edge: Edge, stats: AuthorStats,
                       last_seen: int | None = None) -> None:
        batch = BatchStatement(batch_type=BatchType.UNLOGGED)
        batch.add(self._set_edge, (micros(edge.changed_at), edge.following, edge.changed_at, author_id, follower_id))
        if edge.following and last_seen is not None:
            batch.add(self._set_edge_seen, (last_seen, author_id, follower_id))
        batch.add(self._set_stats, (stats.follower_count, stats.is_celebrity, stats.version, author_id))
        batch.is_idempotent = True
        await self.db.run(batch)

    async def set_following(self, user_id: int, followee_id: int, following: bool, event_time: int) -> None:
        await self.db.run(self._set_following, (micros(event_time), following, user_id, followee_id))

    async def followers_page(self, author_id: int, after: int, limit: int,
                             seen_since: int | None = None) -> FollowerPage:
        rows = await self.db.run(self._followers, (author_id, after, limit))
        following = [r for r in rows if r.following]
        active = [r.follower_id for r in following
                  if seen_since is None or r.last_seen is None or r.last_seen >= seen_since]
        return FollowerPage(active, len(following) - len(active), rows[-1].follower_id if len(rows) == limit else None)

    async def following(self, user_id: int, limit: int) -> list[int]:
        followees: list[int] = []
        after = 0
        page = min(limit, FOLLOWING_PAGE)
        while len(followees) < limit:
            rows = await self.db.run(self._following, (user_id, after, page))
            followees.extend(r.followee_id for r in rows if r.following)
            if len(rows) < page:
                break
            after = rows[-1].followee_id
        return followees[:limit]

    async def set_edges_seen(self, user_id: int, followees: Iterable[int], last_seen: int) -> None:
        requests = ((self._set_edge_seen, (last_seen, author, user_id)) for author in followees)
        await self.db.run_window(requests, self.window)
