"""The composition root: every process builds its metrics, storage and producer here, from one Settings.

Nothing connects at import time. Entry points (services/*) ask for what they need and close it when they
stop; tests build the same objects with other arguments (the in-memory stores, a test registry).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import tenacity
from cassandra.cluster import Cluster, Session

from fanout.adapters.cassandra import Cassandra, cassandra_stores, connect
from fanout.adapters.cassandra.keys import CassandraKeys
from fanout.adapters.cassandra.leases import CassandraNodeLeases
from fanout.adapters.failures import is_outage
from fanout.core.ports import IdempotencyStore, Stores
from fanout.metrics import Metrics
from fanout.retries import backoff
from fanout.settings import KafkaPrincipal, Settings
from fanout.write.leases import LeasedIds, NodeLease
from fanout.write.producer import EventProducer

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class Resources:
    """What one process runs on; `close()` releases it in reverse order of opening."""

    settings: Settings
    metrics: Metrics
    _stores: Stores | None = None
    _producer: EventProducer | None = None
    _keys: IdempotencyStore | None = None
    _closers: list[Callable[[], None]] = field(default_factory=list)

    @property
    def stores(self) -> Stores:
        assert self._stores is not None, "opened without storage"
        return self._stores

    @property
    def producer(self) -> EventProducer:
        assert self._producer is not None, "opened without a producer"
        return self._producer

    @property
    def keys(self) -> IdempotencyStore:
        assert self._keys is not None, "opened without idempotency keys"
        return self._keys

    def close(self) -> None:
        while self._closers:
            self._closers.pop()()


def open_resources(settings: Settings, *, storage: bool = False, producer: bool = False,
                   idempotency: bool = False, lease: bool = False, principal: KafkaPrincipal = "service") -> Resources:
    """Metrics always; a Cassandra session with every store (and the idempotency keys), and an event
    producer acting as Kafka user `principal`, when asked. With `lease`, the producer mints post ids under
    a node id leased for this process (fanout/write/leases.py)."""
    res = Resources(settings, Metrics())
    try:
        if storage:
            cluster, session = connect_waiting(settings, settings.keyspace)
            res._closers.append(cluster.shutdown)
            db = Cassandra(session, settings, res.metrics)
            res._stores = cassandra_stores(db, settings)
            if idempotency:
                res._keys = CassandraKeys(db, settings.idempotency_ttl_seconds)
        if producer:
            ids = _leased_ids(settings, res) if lease else None
            res._producer = EventProducer(settings, node_id=settings.node_id, ids=ids, principal=principal)
            res._closers.append(res._producer.close)
    except BaseException:
        res.close()
        raise
    return res


def connect_waiting(settings: Settings, keyspace: str | None = None) -> tuple[Cluster, Session]:
    """Connect to Cassandra, waiting out an outage (a process started while Cassandra is down or still
    starting, or before `fanout migrate`) for up to FANOUT_OUTAGE_TIMEOUT, as the worker waits mid-run."""
    return wait_out_outages(settings, "Cassandra", lambda: connect(settings, keyspace))


def wait_out_outages(settings: Settings, server: str, attempt: Callable[[], T]) -> T:
    """`attempt()`, run again while it fails with an outage (`is_outage`: a server down, still starting or
    refusing a request it will take later) for up to FANOUT_OUTAGE_TIMEOUT, backing off exponentially to
    FANOUT_OUTAGE_MAX_DELAY. `attempt` must be safe to repeat. Any other error is raised at once."""
    stop = tenacity.stop_after_delay(settings.outage_timeout) if settings.outage_timeout else tenacity.stop_never

    def say(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning("%s not ready (%s: %s); retrying in %.0fs", server, type(error).__name__, error,
                    state.upcoming_sleep)

    retrying = tenacity.Retrying(retry=tenacity.retry_if_exception(is_outage), stop=stop, reraise=True,
                                 wait=backoff(min(1.0, settings.outage_max_delay), settings.outage_max_delay),
                                 before_sleep=say)
    return retrying(attempt)


def _leased_ids(settings: Settings, res: Resources) -> LeasedIds:
    cluster, session = connect_waiting(settings)
    res._closers.append(cluster.shutdown)
    node_lease = NodeLease(CassandraNodeLeases(session, settings), settings.node_lease_ttl,
                           pinned=settings.node_id or None)
    node_lease.start()
    res._closers.append(node_lease.close)
    return LeasedIds(node_lease)
