"""Inboxes (schemas/cql/001_tables.cql: inbox): pushed rows with a TTL, head reads, purges."""

from __future__ import annotations

from collections.abc import Iterable

from fanout.adapters.cassandra.batching import Writes
from fanout.adapters.cassandra.session import Cassandra
from fanout.core.ids import MAX_ID

PURGE_PAGE = 1000


class CassandraInboxes:
    def __init__(self, db: Cassandra, writes: Writes, ttl_seconds: int) -> None:
        self.db = db
        self.writes = writes
        self.ttl = ttl_seconds
        p = db.prepare
        self._push = p("INSERT INTO {keyspace}.inbox (user_id, post_id, author_id) VALUES (?, ?, ?) USING TTL ?")
        self._head = p("SELECT post_id FROM {keyspace}.inbox WHERE user_id = ? AND post_id < ? LIMIT ?")
        self._page = p("SELECT post_id, author_id FROM {keyspace}.inbox WHERE user_id = ? AND post_id < ? LIMIT ?")
        self._delete = p("DELETE FROM {keyspace}.inbox USING TIMESTAMP ? WHERE user_id = ? AND post_id = ?")

    async def push_rows(self, rows: Iterable[tuple[int, int]], author_id: int) -> int:
        """With the rows of every other post of this batch of events, in token-aware unlogged batches."""
        return await self.writes.write((self._push, (user, post, author_id, self.ttl)) for user, post in rows)

    async def inbox_head(self, user_id: int, before: int | None, limit: int) -> list[int]:
        rows = await self.db.run(self._head, (user_id, before or MAX_ID, limit))
        return [r.post_id for r in rows]

    async def purge_inbox(self, user_id: int, author_id: int, as_of_us: int) -> int:
        """One tombstone per row of that author, never a range: rows written later keep their newer
        timestamps and survive."""
        before: int | None = None
        doomed: list[int] = []
        while True:
            rows = await self.db.run(self._page, (user_id, before or MAX_ID, PURGE_PAGE))
            doomed.extend(r.post_id for r in rows if r.author_id == author_id)
            if len(rows) < PURGE_PAGE:
                break
            before = rows[-1].post_id
        return await self.writes.write((self._delete, (as_of_us, user_id, pid)) for pid in doomed)
