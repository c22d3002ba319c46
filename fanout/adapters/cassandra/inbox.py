"""Inboxes (schemas/cql/001_tables.cql: inbox): pushed rows with a TTL, head reads, purges."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from cassandra.query import BatchStatement, BatchType

from fanout.adapters.cassandra.session import Cassandra
from fanout.ids import MAX_ID

PURGE_PAGE = 1000


class CassandraInboxes:
    def __init__(self, db: Cassandra, write_window: int, batch_size: int, ttl_seconds: int) -> None:
        self.db = db
        self.window = write_window
        self.batch_size = batch_size
        self.ttl = ttl_seconds
        p = db.prepare
        self._push = p("INSERT INTO {keyspace}.inbox (user_id, post_id, author_id) VALUES (?, ?, ?) USING TTL ?")
        self._head = p("SELECT post_id FROM {keyspace}.inbox WHERE user_id = ? AND post_id < ? LIMIT ?")
        self._page = p("SELECT post_id, author_id FROM {keyspace}.inbox WHERE user_id = ? AND post_id < ? LIMIT ?")
        self._delete = p("DELETE FROM {keyspace}.inbox USING TIMESTAMP ? WHERE user_id = ? AND post_id = ?")

    async def push_rows(self, rows: Iterable[tuple[int, int]], author_id: int) -> int:
        """Rows in unlogged batches of `batch_size`, `write_window` requests in flight."""
        written = 0

        def requests() -> Iterator[tuple[Any, Sequence[Any] | None]]:
            nonlocal written
            chunk: list[tuple[int, int, int, int]] = []
            for user, post in rows:
                chunk.append((user, post, author_id, self.ttl))
                written += 1
                if len(chunk) >= self.batch_size:
                    yield self._request(chunk)
                    chunk = []
            if chunk:
                yield self._request(chunk)

        await self.db.run_window(requests(), self.window)
        return written

    def _request(self, rows: list[tuple[int, int, int, int]]) -> tuple[Any, Sequence[Any] | None]:
        if len(rows) == 1:  # a batch of one costs more than the plain statement
            return self._push, rows[0]
        batch = BatchStatement(batch_type=BatchType.UNLOGGED)
        for row in rows:
            batch.add(self._push, row)
        batch.is_idempotent = True
        return batch, None

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
        await self.db.run_window(((self._delete, (as_of_us, user_id, pid)) for pid in doomed), self.window)
        return len(doomed)
