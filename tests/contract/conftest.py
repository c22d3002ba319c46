"""One suite, two adapters: every test here that asks for `stores` runs against the in-memory adapter
(no servers) and against real Cassandra on the local stack (a keyspace of this session's own)."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from fanout.adapters.cassandra import Cassandra, cassandra_stores, connect, migrate
from fanout.adapters.cassandra.keys import CassandraKeys
from fanout.adapters.cassandra.notifications import CassandraNotifications
from fanout.adapters.memory import MemoryStorage
from fanout.adapters.memory_keys import MemoryKeys
from fanout.adapters.memory_notifications import MemoryNotifications
from fanout.core.ports import IdempotencyStore, NotificationStore, Stores
from fanout.metrics import Metrics
from fanout.settings import Settings

ADAPTERS = [pytest.param("memory"), pytest.param("cassandra", marks=pytest.mark.e2e)]
_ids = itertools.count(9_000_000_000)


@dataclass
class Real:
    settings: Settings
    db: Cassandra


@pytest.fixture(scope="session")
def real_cassandra(stack: Settings) -> Iterator[Real]:
    """A migrated keyspace of this test session's own on the real Cassandra, dropped at the end."""
    settings = stack.isolated(f"contract_{uuid.uuid4().hex[:8]}")
    migrate(settings)
    cluster, session = connect(settings, settings.keyspace)
    try:
        yield Real(settings, Cassandra(session, settings, Metrics()))
    finally:
        session.execute(f"DROP KEYSPACE IF EXISTS {settings.keyspace}", timeout=120)
        cluster.shutdown()


@pytest.fixture(params=ADAPTERS)
def adapter(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def stores(adapter: str, request: pytest.FixtureRequest) -> Stores:
    if adapter == "memory":
        return MemoryStorage(Settings()).stores()
    real: Real = request.getfixturevalue("real_cassandra")
    return cassandra_stores(real.db, real.settings)


@pytest.fixture
def keys(adapter: str, request: pytest.FixtureRequest) -> IdempotencyStore:
    """Idempotency keys with a TTL of 6 s, so their expiry is testable (with 3 s, a CI run's claim and
    renewal 2 s apart took over the 1 s left and found the key gone)."""
    if adapter == "memory":
        return MemoryKeys(6)
    real: Real = request.getfixturevalue("real_cassandra")
    return CassandraKeys(real.db, 6)


@pytest.fixture
def notifications(adapter: str, request: pytest.FixtureRequest) -> NotificationStore:
    """Notification feeds whose groups are kept 30 days."""
    if adapter == "memory":
        return MemoryNotifications(30 * 86_400)
    real: Real = request.getfixturevalue("real_cassandra")
    return CassandraNotifications(real.db, 30 * 86_400)


@pytest.fixture
def new_id() -> Iterator[int]:
    """Ids no other test uses (the real keyspace is shared by the whole session)."""
    return _ids
