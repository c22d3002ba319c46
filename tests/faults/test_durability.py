"""The local Cassandra survives kill -9 like a real server: schema and acknowledged writes are all there.

Reproduces issue 11: kill -9 shortly after `fanout migrate` and a load of writes, restart with the
launcher; before the fix the keyspace's tables were gone (schema changes lived only in memtables) and
acknowledged writes of the last moments were lost (periodic commit-log sync).
"""

from __future__ import annotations

import asyncio
import time

import pytest
from cluster import kill9, names, restart
from rig import scan

from fanout.adapters.cassandra import Cassandra, cassandra_stores, connect, migrate
from fanout.metrics import Metrics
from fanout.settings import Settings

pytestmark = pytest.mark.faults

ROWS = 5000


async def _write_inbox_rows(s: Settings) -> int:
    cluster, session = connect(s, s.keyspace)
    try:
        stores = cassandra_stores(Cassandra(session, s, Metrics()), s)
        return await stores.inboxes.push_rows(((user, 1_000_000 + user) for user in range(1, ROWS + 1)), 7)
    finally:
        cluster.shutdown()


def test_kill_9_right_after_migrate_and_writes_loses_nothing(stack_up: Settings) -> None:
    s = stack_up.isolated(f"durability_{int(time.time())}")
    migrate(s)
    assert asyncio.run(_write_inbox_rows(s)) == ROWS  # every row acknowledged
    time.sleep(0.5)
    for name in names(s, "cassandra"):  # every node: on a cluster too, no replica is left to help
        kill9(s, name)
    restart(s)
    cluster, session = connect(s)
    try:
        tables = {r.table_name for r in session.execute(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s", (s.keyspace,))}
        assert {"inbox", "posts", "followers_by_author", "node_leases"} <= tables
        rows = scan(session, f"SELECT user_id FROM {s.keyspace}.inbox")
        assert {r.user_id for r in rows} == set(range(1, ROWS + 1))
    finally:
        cluster.shutdown()
