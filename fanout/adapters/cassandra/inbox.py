"""Inboxes (schemas/cql/001_tables.cql: inbox): pushed rows with a TTL, head reads, trims to the cap
(006_bounded_inboxes.cql), purges."""

from __future__ import annotations

from collections.abc import Iterable

from cassandra.query import BatchStatement, BatchType

from fanout.adapters.cassandra.batching import Writes
from fanout.adapters.cassandra.session import Cassandra
from fanout.core.ids import MAX_ID

PURGE_PAGE = 1000
TRIM_READ_LIMIT = 100_000  # ids a trim reads at most (a trimmed inbox holds the cap and the pushes since)


class CassandraInboxes:
    def __init__(self, db: Cassandra, writes: Writes, ttl_seconds: int) -> None:
        self.db = db
        self.writes = writes
        self.ttl = ttl_seconds
        p = db.prepare
        self._push = p("INSERT INTO {keyspace}.inbox (user_id, post_id, author_id) VALUES (?, ?, ?) USING TTL ?")
        self._head = p("SELECT post_id FROM {keyspace}.inbox WHERE user_id = ? AND post_id < ? LIMIT ?")
        self._page = p("SELECT post_id, author_id FROM {keyspace}.inbox WHERE user_id = ? AND post_id < ? LIMIT ?")
        self._ids = p("SELECT post_id FROM {keyspace}.inbox WHERE user_id = ? LIMIT ?")
        # One range tombstone below the boundary, and the boundary, in one single-partition batch (atomic). The
        # tombstone has the clock's timestamp: a row pushed below it later (a follow's backfill) survives
        # until the next trim.
        self._trim = p("DELETE FROM {keyspace}.inbox WHERE user_id = ? AND post_id < ?")
        self._boundary = p("UPDATE {keyspace}.inbox USING TIMESTAMP ? SET trimmed_below = ? WHERE user_id = ?")
        self._delete = p("DELETE FROM {keyspace}.inbox USING TIMESTAMP ? WHERE user_id = ? AND post_id = ?")

    async def push_rows(self, rows: Iterable[tuple[int, int]], author_id: int) -> int:
        """With the rows of every other post of this batch of events, in token-aware unlogged batches."""
        return await self.writes.write((self._push, (user, post, author_id, self.ttl)) for user, post in rows)

    async def inbox_head(self, user_id: int, before: int | None, limit: int) -> list[int]:
        rows = await self.db.run(self._head, (user_id, before or MAX_ID, limit))
        return [r.post_id for r in rows]

    async def trim_inbox(self, user_id: int, keep: int) -> int:
        # Every id, not only the first `keep`: the partition is bounded (the cap and what was pushed since the
        # last trim), and the count says how many rows the trim deletes.
        rows = await self.db.run(self._ids, (user_id, TRIM_READ_LIMIT))
        if len(rows) <= keep:
            return 0
        boundary = rows[keep - 1].post_id
        batch = BatchStatement(batch_type=BatchType.UNLOGGED)  # one partition: atomic without a batchlog
        batch.add(self._trim, (user_id, boundary))
        batch.add(self._boundary, (boundary, boundary, user_id))
        await self.db.run(batch)
        return len(rows) - keep

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
