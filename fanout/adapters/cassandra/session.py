"""cassandra-driver on asyncio: connection, the awaitable bridge, retries with backoff.

`session.execute` blocks; every request made from an event loop goes through `Cassandra.run`, which
uses `execute_async` and resolves an asyncio future from the driver's callback thread.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import socket
import struct
import time
from collections import namedtuple
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import tenacity
from cassandra import (
    ConsistencyLevel,
    CoordinationFailure,
    OperationTimedOut,
    ReadTimeout,
    Unauthorized,
    Unavailable,
    WriteTimeout,
)
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable, Session
from cassandra.policies import ConstantReconnectionPolicy, DCAwareRoundRobinPolicy, TokenAwarePolicy
from cassandra.query import BoundStatement, PreparedStatement

from fanout.metrics import Metrics
from fanout.retries import after_failure, backoff
from fanout.settings import Settings

log = logging.getLogger(__name__)
TRANSIENT = (WriteTimeout, ReadTimeout, Unavailable, OperationTimedOut, NoHostAvailable, CoordinationFailure,
             ConnectionError)
# Cassandra answers Unauthorized when it could not read its own permission tables in time ("Unable to perform
# authorization of permissions: Operation timed out"), seen on a loaded cluster: a timeout, not a refusal.
PERMISSIONS_TIMED_OUT = "unable to perform authorization"
T = TypeVar("T")
# Requests made in the current context (e.g. one feed read), when someone is counting: see count_requests.
_requests: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("cassandra_requests", default=None)


class Gate(Protocol):
    """Admits requests beyond a window (batching.BulkGate): `admit` before one starts, `release` once it ended."""

    async def admit(self) -> None: ...

    def release(self, seconds: float | None = None) -> None: ...


def is_transient(exc: BaseException) -> bool:
    """An error that the same request may well not meet again: retried (`Cassandra.retrying`)."""
    return isinstance(exc, TRANSIENT) or (isinstance(exc, Unauthorized) and PERMISSIONS_TIMED_OUT in str(exc).lower())


def count_requests() -> list[int]:
    """Start counting the requests this context makes (tasks it starts share the count); returns the
    counter, whose single element grows with every request, retries included."""
    counter = [0]
    _requests.set(counter)
    return counter


@functools.lru_cache(maxsize=512)
def _row_class(columns: tuple[str, ...]) -> Any:
    return namedtuple("Row", columns, rename=True)


def cached_named_tuple_factory(colnames: list[str], rows: list[tuple[Any, ...]]) -> list[Any]:
    """Rows as named tuples, like the driver's default, but the class is built once per column list:
    the default builds a new namedtuple class for every response, 13% of the worker's CPU in a profile."""
    make = _row_class(tuple(colnames))._make
    return [make(row) for row in rows]


def connect(settings: Settings, keyspace: str | None = None, protocol_version: int = 4,
            row_factories: Mapping[Any, Callable[..., Any]] | None = None) -> tuple[Cluster, Session]:
    """A cluster that reconnects every second (the default backoff grows to 600 s). Protocol v4 unless told;
    `row_factories` names execution profiles by their row factory (default: cached named tuples).
    Requests run at FANOUT_WRITE_CONSISTENCY (prepared SELECTs at FANOUT_READ_CONSISTENCY, see `prepare`).

    Requests go to a replica of their partition (token-aware, round robin among the local DC's nodes
    underneath): on a cluster, a batch whose rows share one replica set (batching.py groups them so) is
    then written by a coordinator that holds every row itself, with no extra hop. On one node it changes
    nothing."""
    factories = {EXEC_PROFILE_DEFAULT: cached_named_tuple_factory, **(row_factories or {})}
    write, serial = consistency(settings.write_consistency), consistency(settings.serial_consistency)

    def profile(factory: Callable[..., Any]) -> ExecutionProfile:
        return ExecutionProfile(load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy()),
                                request_timeout=15.0, row_factory=factory, consistency_level=write,
                                serial_consistency_level=serial)

    cluster = Cluster(
        settings.cassandra_contact_points,
        port=settings.cassandra_port,
        protocol_version=protocol_version,
        execution_profiles={name: profile(factory) for name, factory in factories.items()},
        reconnection_policy=ConstantReconnectionPolicy(1.0, max_attempts=None),
        connect_timeout=10,
        # Nagle off: the driver leaves it on, and then a request bigger than ~2.5 KB (a batch of ~40 rows)
        # waits for the server's delayed ACK, ~40 ms on Linux, on top of the few ms the write takes.
        sockopts=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        auth_provider=(PlainTextAuthProvider(settings.cassandra_username, settings.cassandra_password)
                       if settings.cassandra_username else None),
    )
    try:
        return cluster, cluster.connect(keyspace)
    except Exception:
        cluster.shutdown()  # no reconnecting threads left behind by a failed connect
        raise


class _Routed(BoundStatement):
    """A bound statement routed by a key given by hand: the driver derives none for an `IN` query."""

    def __init__(self, stmt: PreparedStatement, routing_key: bytes) -> None:
        super().__init__(stmt)
        self._given_key = routing_key

    @property
    def routing_key(self) -> bytes:
        return self._given_key


class Cassandra:
    """A session plus the asyncio bridge and the retry policy every async request goes through."""

    def __init__(self, session: Session, settings: Settings, metrics: Metrics) -> None:
        self.session = session
        self.settings = settings
        self.metrics = metrics
        # The first try is made by `retrying` itself; this takes over after a transient failure.
        self._retries = tenacity.AsyncRetrying(
            retry=tenacity.retry_if_exception(is_transient), stop=tenacity.stop_after_attempt(settings.retry_attempts),
            wait=backoff(settings.retry_base_delay, 5.0, jitter=True), after=self._count_error,
            before_sleep=self._announce_retry, reraise=True)

    def prepare(self, cql: str) -> PreparedStatement:
        stmt = self.session.prepare(cql.format(keyspace=self.settings.keyspace))
        if cql.lstrip().upper().startswith("SELECT"):
            stmt.consistency_level = consistency(self.settings.read_consistency)
        stmt.is_idempotent = True  # every statement of ours is: same key, same values (or LWW by time)
        # No driver paging: every query of ours carries its own LIMIT, and the callback of execute_async
        # would only see the first page (5,000 rows), silently dropping the rest of a bigger LIMIT.
        stmt.fetch_size = None
        return stmt

    def execute_async(self, stmt: Any, params: Sequence[Any] | None = None) -> asyncio.Future[list[Any]]:
        """One request, as an asyncio future of all rows of its first page."""
        counter = _requests.get()
        if counter is not None:
            counter[0] += 1
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        response = self.session.execute_async(stmt, params)

        def done(rows: Any) -> None:
            if not future.done():
                future.set_result(list(rows) if rows is not None else [])

        def failed(exc: BaseException) -> None:
            if not future.done():
                future.set_exception(exc)

        response.add_callbacks(
            callback=lambda rows: loop.call_soon_threadsafe(done, rows),
            errback=lambda exc: loop.call_soon_threadsafe(failed, exc),
        )
        return future

    async def run(self, stmt: Any, params: Sequence[Any] | None = None) -> list[Any]:
        """One request with retries on transient errors; raises after the last attempt."""
        return await self.retrying(lambda: self.execute_async(stmt, params))

    async def retrying(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """`attempt()`, tried up to FANOUT_RETRY_ATTEMPTS times while it fails with a transient error."""
        try:
            return await attempt()  # nearly every request: no retry machinery at all (fanout/retries.py)
        except Exception as error:
            if not is_transient(error):
                raise
            first = error
        return await after_failure(first, attempt, self._retries)

    def _count_error(self, state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        self.metrics.cassandra_errors.labels(type(error).__name__).inc()

    def _announce_retry(self, state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        self.metrics.cassandra_retries.inc()
        log.warning("cassandra request failed (%s), retry %d in %.2fs", type(error).__name__,
                    state.attempt_number, state.upcoming_sleep)

    def replica_grouper(self) -> Callable[[bytes | None], Hashable]:
        """`replica_group`, or on one node (where everything is one group) a function that hashes nothing:
        looked up once per flush, not once per row."""
        metadata = getattr(getattr(self.session, "cluster", None), "metadata", None)
        if metadata is None or len(metadata.all_hosts()) <= 1:
            return _one_group
        return self.replica_group

    def replica_group(self, routing_key: bytes | None) -> Hashable:
        """The set of nodes holding the partition of `routing_key`: what rows must share to be batched.

        Why batches are grouped by replica set, not by partition: an unlogged batch goes to one coordinator,
        which hands each row to that row's replicas. Rows of many partitions spread over the ring make the
        coordinator fan the batch out and hold all of it meanwhile: fine on one node, the known anti-pattern
        on a cluster. Rows whose partitions share one replica set cost nothing extra: the token-aware policy
        picks one of those replicas as coordinator (the batch's first row routes it), which writes its copy
        locally and sends the others exactly what single-row writes would have. Grouping by partition
        instead would leave inbox batches of one row (one row per follower per post). With RF = N (3 nodes,
        RF 3) every token has the same replica set, so batches stay as full as on one node; with RF < N rows
        fall into a few groups and batches stay full while enough rows are in flight.
        None when the driver has no token map (no routing key, metadata off): one group, as on one node.
        """
        if routing_key is None:
            return None
        metadata = getattr(getattr(self.session, "cluster", None), "metadata", None)
        if metadata is None:
            return None
        replicas = metadata.get_replicas(self.settings.keyspace, routing_key)
        return frozenset(replicas) if replicas else None

    async def run_routed(self, stmt: PreparedStatement, params: Sequence[Any], routing_key: bytes) -> list[Any]:
        """One request sent to a replica of `routing_key` (an IN query has no routing key of its own)."""
        return await self.run(_Routed(stmt, routing_key).bind(params))

    async def run_all(self, requests: Sequence[Any], window: int,
                      gate: Gate | None = None) -> list[BaseException | None]:
        """Run every request (a statement or batch, bound), at most `window` in flight, each also admitted
        by `gate` if given; the error of each, None for those written. After a failure (retries exhausted)
        no new request starts: those left unsent get that error too."""
        slots = asyncio.Semaphore(window)
        outcomes: list[BaseException | None] = [None] * len(requests)
        first_error: list[BaseException] = []

        async def one(i: int) -> None:
            started = time.perf_counter()
            try:
                await self.run(requests[i])
            except Exception as exc:
                outcomes[i] = exc
                first_error.append(exc)
            finally:
                slots.release()
                if gate:
                    gate.release(time.perf_counter() - started)

        tasks = []
        for i in range(len(requests)):
            await slots.acquire()
            if gate:
                await gate.admit()
            if first_error:
                slots.release()
                if gate:
                    gate.release()
                outcomes[i:] = [first_error[0]] * (len(requests) - i)
                break
            tasks.append(asyncio.ensure_future(one(i)))
        if tasks:
            await asyncio.gather(*tasks)
        return outcomes

    async def run_window(self, requests: Iterable[tuple[Any, Sequence[Any] | None]], window: int) -> int:
        """Run every (statement, parameters) request, at most `window` in flight; returns how many ran.

        A sliding window: a new request starts as soon as one finishes. After a failure (retries
        exhausted) no new request starts; the ones in flight settle, then the first error is raised.
        """
        slots = asyncio.Semaphore(window)
        pending: set[asyncio.Future[list[Any]]] = set()
        errors: list[BaseException] = []
        count = 0

        def settled(task: asyncio.Future[list[Any]]) -> None:
            pending.discard(task)
            slots.release()
            if not task.cancelled() and task.exception() is not None:
                errors.append(task.exception())  # type: ignore[arg-type]

        for stmt, params in requests:
            await slots.acquire()
            if errors:
                slots.release()
                break
            task = asyncio.ensure_future(self.run(stmt, params))
            pending.add(task)
            task.add_done_callback(settled)
            count += 1
        if pending:
            await asyncio.wait(set(pending))
        if errors:
            raise errors[0]
        return count


def consistency(name: str) -> int:
    """A consistency level by name (ONE, LOCAL_QUORUM, QUORUM, ALL, LOCAL_SERIAL, ...)."""
    try:
        return int(ConsistencyLevel.name_to_value[name.upper()])
    except KeyError:
        raise ValueError(f"unknown Cassandra consistency level {name!r}; one of "
                         f"{', '.join(ConsistencyLevel.name_to_value)}") from None


def _one_group(routing_key: bytes | None) -> Hashable:
    return None


def bigint_key(value: int) -> bytes:
    """The routing key of a partition keyed by one bigint (how the driver serialises it)."""
    return struct.pack(">q", value)


def micros(ms: int) -> int:
    """Milliseconds of event time as a CQL write timestamp (microseconds)."""
    return ms * 1000
