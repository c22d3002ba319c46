"""The follow graph (schemas/cql/001_tables.cql: followers_by_author, following_by_user).

Edges carry USING TIMESTAMP = event time (µs), so a replayed or late follow/unfollow resolves
last-writer-wins by event time. The author's count, tier and version are static columns of its
followers partition, written with the edges in one single-partition batch: atomic, and written only by
the worker that owns the author's Kafka partition.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from cassandra.query import PreparedStatement

from fanout.adapters.cassandra.batching import Loader, Writes
from fanout.adapters.cassandra.session import Cassandra, bigint_key, micros
from fanout.core.model import AuthorStats, Edge, EdgeChange, FollowerPage

FOLLOWING_PAGE = 1000
IN_KEYS = 100  # authors (or followers of one author) per IN query
# The first follower pages of a batch's authors are read together: at most this many rows per request,
# so one response stays a few milliseconds of decoding.
ROWS_PER_READ = 20_000
NAMES_PER_READ = 400  # authors x followers looked up by one edges read


class CassandraGraph:
    def __init__(self, db: Cassandra, writes: Writes, page_size: int) -> None:
        self.db = db
        self.writes = writes
        self.page_size = page_size
        p = db.prepare
        self._stats = p("SELECT author_id, follower_count, is_celebrity, version FROM {keyspace}.followers_by_author "
                        "WHERE author_id IN ? PER PARTITION LIMIT 1")
        self._edge = p("SELECT following, changed_at FROM {keyspace}.followers_by_author "
                       "WHERE author_id = ? AND follower_id = ?")
        self._edges = p("SELECT author_id, follower_id, following, changed_at FROM {keyspace}.followers_by_author "
                        "WHERE author_id IN ? AND follower_id IN ?")
        self._set_edge = p("UPDATE {keyspace}.followers_by_author USING TIMESTAMP ? "
                           "SET following = ?, changed_at = ? WHERE author_id = ? AND follower_id = ?")
        self._set_stats = p("UPDATE {keyspace}.followers_by_author SET follower_count = ?, is_celebrity = ?, "
                            "version = ? WHERE author_id = ?")
        self._followers = p("SELECT follower_id, following, last_seen, follows FROM {keyspace}.followers_by_author "
                            "WHERE author_id = ? AND follower_id > ? LIMIT ?")
        self._first_followers = p("SELECT author_id, follower_id, following, last_seen, follows "
                                  "FROM {keyspace}.followers_by_author WHERE author_id IN ? PER PARTITION LIMIT ?")
        self._set_edge_seen = p("UPDATE {keyspace}.followers_by_author SET last_seen = ? "
                                "WHERE author_id = ? AND follower_id = ?")
        self._set_edge_seen_follows = p("UPDATE {keyspace}.followers_by_author SET last_seen = ?, follows = ? "
                                        "WHERE author_id = ? AND follower_id = ?")
        # Within one partition, so the filter costs a scan of that user's rows, on the replica.
        self._following_count = p("SELECT COUNT(*) AS n FROM {keyspace}.following_by_user WHERE user_id = ? "
                                  "AND following = true ALLOW FILTERING")
        self._following = p("SELECT followee_id, following FROM {keyspace}.following_by_user "
                            "WHERE user_id = ? AND followee_id > ? LIMIT ?")
        self._set_following = p("UPDATE {keyspace}.following_by_user USING TIMESTAMP ? SET following = ? "
                                "WHERE user_id = ? AND followee_id = ?")
        # Stats of authors not in the worker's cache, and the first follower page of every author posting
        # in a batch of events: one IN query per replica group each, for all handlers of the batch.
        self._stats_loader: Loader[int, AuthorStats] = Loader(db, self._fetch_stats, bigint_key, IN_KEYS)
        # The edges a batch of follow changes needs, every author's at once.
        self._edge_loader: Loader[tuple[int, int], Edge] = Loader(db, self._fetch_edges,
                                                                 lambda key: bigint_key(key[0]), IN_KEYS)
        authors_per_read = max(1, min(IN_KEYS, ROWS_PER_READ // page_size))
        self._page_loader: Loader[tuple[int, int], list[Any]] = Loader(
            db, self._fetch_first_pages, lambda key: bigint_key(key[0]), authors_per_read)

    async def author_stats(self, author_id: int) -> AuthorStats:
        return await self._stats_loader.load(author_id) or AuthorStats(0, False)

    async def _fetch_stats(self, authors: list[int]) -> dict[int, AuthorStats]:
        rows = await self.db.run_routed(self._stats, (authors,), bigint_key(authors[0]))
        return {r.author_id: AuthorStats(r.follower_count or 0, bool(r.is_celebrity), r.version or 0) for r in rows}

    async def edge(self, author_id: int, follower_id: int) -> Edge | None:
        rows = await self.db.run(self._edge, (author_id, follower_id))
        if not rows or rows[0].changed_at is None:
            return None
        return Edge(bool(rows[0].following), rows[0].changed_at)

    async def edges(self, author_id: int, follower_ids: Iterable[int]) -> dict[int, Edge]:
        keys = [(author_id, f) for f in dict.fromkeys(follower_ids)]
        found = await self._edge_loader.load_many(keys)
        return {f: found[(a, f)] for a, f in keys if (a, f) in found}

    async def _fetch_edges(self, keys: list[tuple[int, int]]) -> dict[tuple[int, int], Edge]:
        """`author_id IN (..) AND follower_id IN (..)` reads every author x follower name: requests are cut so
        that this product stays small (one author's followers, or a few authors with a few each)."""
        requests: list[tuple[list[int], list[int]]] = []
        authors: set[int] = set()
        followers: set[int] = set()
        for author, follower in keys:
            if authors and len(authors | {author}) * len(followers | {follower}) > NAMES_PER_READ:
                requests.append((sorted(authors), sorted(followers)))
                authors, followers = set(), set()
            authors.add(author)
            followers.add(follower)
        requests.append((sorted(authors), sorted(followers)))
        answers = await asyncio.gather(*(self.db.run_routed(self._edges, (a, f), bigint_key(a[0]))
                                         for a, f in requests))
        return {(r.author_id, r.follower_id): Edge(bool(r.following), r.changed_at)
                for rows in answers for r in rows if r.changed_at is not None}

    async def set_edge(self, author_id: int, follower_id: int, edge: Edge, stats: AuthorStats,
                       last_seen: int | None = None) -> None:
        await self.set_edges(author_id, [EdgeChange(follower_id, edge, last_seen)], stats)

    async def set_edges(self, author_id: int, changes: Sequence[EdgeChange], stats: AuthorStats) -> None:
        # One partition, sent whole in one batch (with other authors' commits): Cassandra applies it as one
        # mutation (atomic, isolated), which is what makes it a commit point.
        writes: list[tuple[PreparedStatement, tuple[Any, ...]]] = []
        for c in changes:
            writes.append((self._set_edge, (micros(c.edge.changed_at), c.edge.following, c.edge.changed_at,
                                            author_id, c.follower_id)))
            if c.edge.following and c.last_seen is not None:
                writes.append((self._set_edge_seen, (c.last_seen, author_id, c.follower_id)))
        writes.append((self._set_stats, (stats.follower_count, stats.is_celebrity, stats.version, author_id)))
        await self.writes.write(writes, atomic=True)

    async def set_following(self, user_id: int, followee_id: int, following: bool, event_time: int) -> None:
        await self.set_followings([(user_id, followee_id, following, event_time)])

    async def set_followings(self, changes: Iterable[tuple[int, int, bool, int]]) -> None:
        await self.writes.write((self._set_following, (micros(t), following, user, followee))
                                for user, followee, following, t in changes)

    async def followers_page(self, author_id: int, after: int, limit: int,
                             seen_since: int | None = None, over_follows: int = 0) -> FollowerPage:
        if after == 0 and limit <= self.page_size:  # read with the other first pages of this batch of events
            rows = await self._page_loader.load((author_id, limit)) or []
        else:
            rows = await self.db.run(self._followers, (author_id, after, limit))
        following = [r for r in rows if r.following]
        active = [r for r in following if seen_since is None or r.last_seen is None or r.last_seen >= seen_since]
        over = {r.follower_id: r.follows for r in active if r.follows and r.follows > over_follows} \
            if over_follows else {}
        return FollowerPage([r.follower_id for r in active], len(following) - len(active),
                            rows[-1].follower_id if len(rows) == limit else None, over)

    async def _fetch_first_pages(self, keys: list[tuple[int, int]]) -> dict[tuple[int, int], list[Any]]:
        by_limit: dict[int, list[int]] = defaultdict(list)
        for author, limit in keys:
            by_limit[limit].append(author)
        pages: dict[tuple[int, int], list[Any]] = {key: [] for key in keys}
        for limit, authors in by_limit.items():
            rows = await self.db.run_routed(self._first_followers, (authors, limit), bigint_key(authors[0]))
            for r in rows:
                if r.follower_id is not None:  # a partition with only its static columns
                    pages[(r.author_id, limit)].append(r)
        return pages

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

    async def following_count(self, user_id: int) -> int:
        rows = await self.db.run(self._following_count, (user_id,))
        return int(rows[0].n)

    async def set_edges_seen(self, user_id: int, followees: Iterable[int], last_seen: int, follows: int = 0) -> None:
        if follows:
            await self.writes.write((self._set_edge_seen_follows, (last_seen, follows, author, user_id))
                                    for author in followees)
        else:
            await self.writes.write((self._set_edge_seen, (last_seen, author, user_id)) for author in followees)
