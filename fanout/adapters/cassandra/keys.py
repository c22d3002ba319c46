"""Idempotency keys (schemas/cql/004_security.cql: idempotency_keys), with lightweight transactions.

Every write rewrites the whole row with the TTL, so a key lives FANOUT_IDEMPOTENCY_TTL_SECONDS from its
last write and no half-expired row is ever read. Reads are SERIAL: they see every transaction that
returned, on any replica, which is what makes the compare-and-set safe in a cluster.
"""

from __future__ import annotations

from typing import Any

from cassandra import ConsistencyLevel

from fanout.adapters.cassandra.session import Cassandra
from fanout.core.model import KeyRecord

COLUMNS = "request_hash, event, claimed_until, response"


class CassandraKeys:
    def __init__(self, db: Cassandra, ttl_seconds: int) -> None:
        self.db = db
        self.ttl = ttl_seconds
        p = db.prepare
        self._claim = p(f"INSERT INTO {{keyspace}}.idempotency_keys (user_id, key, {COLUMNS}) "
                        "VALUES (?, ?, ?, ?, ?, ?) IF NOT EXISTS USING TTL ?")
        self._get = p(f"SELECT {COLUMNS} FROM {{keyspace}}.idempotency_keys WHERE user_id = ? AND key = ?")
        self._get.consistency_level = ConsistencyLevel.SERIAL
        self._replace = p("UPDATE {keyspace}.idempotency_keys USING TTL ? SET request_hash = ?, event = ?, "
                          "claimed_until = ?, response = ? WHERE user_id = ? AND key = ? IF claimed_until = ?")

    async def claim(self, user_id: int, key: str, record: KeyRecord) -> KeyRecord | None:
        [row] = await self.db.run(self._claim, (user_id, key, *_values(record), self.ttl))
        return None if row[0] else _record(row)

    async def record(self, user_id: int, key: str) -> KeyRecord | None:
        rows = await self.db.run(self._get, (user_id, key))
        return _record(rows[0]) if rows and rows[0].request_hash is not None else None

    async def replace(self, user_id: int, key: str, claimed_until: int, record: KeyRecord) -> bool:
        [row] = await self.db.run(self._replace, (self.ttl, *_values(record), user_id, key, claimed_until))
        return bool(row[0])


def _values(r: KeyRecord) -> tuple[Any, ...]:
    return r.request_hash, r.event, r.claimed_until, r.response


def _record(row: Any) -> KeyRecord:
    return KeyRecord(row.request_hash, bytes(row.event), row.claimed_until,
                     bytes(row.response) if row.response is not None else None)
