"""Posts by id and author timelines (schemas/cql/001_tables.cql: posts, author_timeline)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence

from fanout.adapters.cassandra.batching import Loader, Writes
from fanout.adapters.cassandra.session import Cassandra, bigint_key, micros
from fanout.core.ids import MAX_ID, millis_of
from fanout.core.model import Post, StoredPost, Tier

IN_KEYS = 100  # post ids per IN query of the replay check


class CassandraPosts:
    def __init__(self, db: Cassandra, writes: Writes) -> None:
        self.db = db
        self.writes = writes
        p = db.prepare
        self._tiers = p("SELECT post_id, author_id, tier FROM {keyspace}.posts WHERE post_id IN ?")
        # The create is written at the post's own time, so a later delete (or a replay) orders with it.
        self._insert = p("INSERT INTO {keyspace}.posts (post_id, author_id, body, tier, deleted) "
                         "VALUES (?, ?, ?, ?, false) USING TIMESTAMP ?")
        self._insert_timeline = p("INSERT INTO {keyspace}.author_timeline (author_id, post_id) VALUES (?, ?)")
        # A set of claimed deleters, not one last-writer-wins column: a later claim by someone else can
        # never take the author's delete away (schemas/cql/004_security.cql).
        self._delete = p("UPDATE {keyspace}.posts USING TIMESTAMP ? SET deleters = deleters + ? WHERE post_id = ?")
        # One request for a whole page of posts: the driver's per-request CPU, not Cassandra, bounds reads.
        self._get = p("SELECT post_id, author_id, body, deleters FROM {keyspace}.posts WHERE post_id IN ?")
        self._timeline_head = p("SELECT post_id FROM {keyspace}.author_timeline "
                                "WHERE author_id = ? AND post_id < ? LIMIT ?")
        self._latest = p("SELECT author_id, post_id FROM {keyspace}.author_timeline WHERE author_id IN ? "
                         "PER PARTITION LIMIT ?")
        self._latest_loader: Loader[tuple[int, int], list[int]] = Loader(
            db, self._fetch_latest, lambda key: bigint_key(key[0]), IN_KEYS)
        # The replay check of every post of a batch of events in one request (per replica group).
        self._tier_loader: Loader[int, StoredPost] = Loader(db, self._fetch_tiers, bigint_key, IN_KEYS)

    async def stored_post(self, post_id: int) -> StoredPost | None:
        return await self._tier_loader.load(post_id)

    async def _fetch_tiers(self, post_ids: list[int]) -> dict[int, StoredPost]:
        rows = await self.db.run_routed(self._tiers, (post_ids,), bigint_key(post_ids[0]))
        return {r.post_id: StoredPost(r.author_id, Tier(r.tier)) for r in rows if r.tier and r.author_id is not None}

    async def save_post(self, post_id: int, author_id: int, body: str, tier: Tier) -> None:
        # Both rows go with the other posts' rows of this batch of events, in batches by replica set: the
        # post and its timeline entry in one request when their partitions share replicas (always on one
        # node or with RF = N).
        post = (post_id, author_id, body, tier.value, micros(millis_of(post_id)))
        await self.writes.write([(self._insert, post), (self._insert_timeline, (author_id, post_id))])

    async def mark_deleted(self, post_id: int, author_id: int, event_time: int) -> None:
        # A delete always wins over its own post's create, even if the clocks disagree.
        ts = micros(max(event_time, millis_of(post_id) + 1))
        await self.writes.write([(self._delete, (ts, {author_id}, post_id))])

    async def posts(self, post_ids: Sequence[int]) -> dict[int, Post]:
        if not post_ids:
            return {}
        rows = await self.db.run(self._get, (list(post_ids),))
        # Only its author deletes a post: a delete claimed by anyone else is ignored. It may arrive before
        # the post itself, so this is decided here, when both are known.
        return {r.post_id: Post(r.post_id, r.author_id, r.body or "", r.author_id in (r.deleters or ()))
                for r in rows if r.author_id is not None}

    async def latest_posts(self, author_id: int, limit: int) -> list[int]:
        return await self._latest_loader.load((author_id, limit)) or []

    async def _fetch_latest(self, keys: list[tuple[int, int]]) -> dict[tuple[int, int], list[int]]:
        by_limit: dict[int, list[int]] = defaultdict(list)
        for author, limit in keys:
            by_limit[limit].append(author)
        heads: dict[tuple[int, int], list[int]] = {key: [] for key in keys}
        for limit, authors in by_limit.items():
            for r in await self.db.run_routed(self._latest, (authors, limit), bigint_key(authors[0])):
                heads[(r.author_id, limit)].append(r.post_id)
        return heads

    async def timeline_head(self, author_id: int, before: int | None, limit: int) -> list[int]:
        rows = await self.db.run(self._timeline_head, (author_id, before or MAX_ID, limit))
        return [r.post_id for r in rows]

    async def timeline_heads(self, author_ids: Sequence[int], before: int | None, limit: int) -> list[list[int]]:
        return list(await asyncio.gather(*(self.timeline_head(a, before, limit) for a in author_ids)))
