"""Node id leases (schemas/cql/003_node_leases.cql) as lightweight transactions: compare-and-set with a TTL.

Synchronous: a lease is taken once at start and renewed from a background thread (fanout/write/leases.py),
never on an event loop. The statements are not idempotent (a retried insert-if-absent may report
"not applied" for a lease it took itself), so a failed call is left to the caller's next round.
"""

from __future__ import annotations

from cassandra.cluster import Session
from cassandra.query import PreparedStatement

from fanout.settings import Settings


class CassandraNodeLeases:
    def __init__(self, session: Session, settings: Settings) -> None:
        ks = settings.keyspace
        self.session = session
        self._acquire = session.prepare(f"INSERT INTO {ks}.node_leases (node_id, owner) VALUES (?, ?) "
                                        "IF NOT EXISTS USING TTL ?")
        self._renew = session.prepare(f"UPDATE {ks}.node_leases USING TTL ? SET owner = ? WHERE node_id = ? "
                                      "IF owner = ?")
        self._release = session.prepare(f"DELETE FROM {ks}.node_leases WHERE node_id = ? IF owner = ?")

    def acquire(self, node_id: int, owner: str, ttl_seconds: int) -> bool:
        return self._applied(self._acquire, (node_id, owner, ttl_seconds))

    def renew(self, node_id: int, owner: str, ttl_seconds: int) -> bool:
        return self._applied(self._renew, (ttl_seconds, owner, node_id, owner))

    def _applied(self, stmt: PreparedStatement, params: tuple[object, ...]) -> bool:
        """The `[applied]` column an LWT answers with, first in its row (whatever the row factory)."""
        row = self.session.execute(stmt, params).one()
        return bool(row[0])

    def release(self, node_id: int, owner: str) -> None:
        self.session.execute(self._release, (node_id, owner))
