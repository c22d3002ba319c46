"""The adapter's coalescing (fanout/adapters/cassandra/batching.py) over a fake driver session: calls of one
event-loop iteration become few requests, grouped by replica set, and each caller learns about its own rows."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from cassandra import WriteTimeout, WriteType
from cassandra.cqltypes import LongType
from cassandra.protocol import ColumnMetadata
from cassandra.query import BatchStatement, BoundStatement, PreparedStatement
from clocks import ManualClock

from fanout.adapters.cassandra.batching import MAX_BATCH_BYTES, BulkGate, LatencyLimit, Loader, Writes
from fanout.adapters.cassandra.session import Cassandra, bigint_key
from fanout.core.ports import bulk_work
from fanout.metrics import Metrics
from fanout.settings import Settings


def prepared(columns: Sequence[tuple[str, Any]] = (("user_id", LongType), ("post_id", LongType))) -> PreparedStatement:
    """An INSERT prepared as the server would describe it, routed by its first column."""
    meta = [ColumnMetadata("ks", "inbox", name, kind) for name, kind in columns]
    return PreparedStatement(meta, b"id", [0], "INSERT ...", "ks", 4, None, None)


@dataclass(frozen=True)
class Node:
    name: str


@dataclass
class Metadata:
    """Partitions with an even key live on nodes a+b, odd ones on b+c (two replica sets)."""

    nodes: dict[str, Node] = field(default_factory=lambda: {n: Node(n) for n in "abc"})

    def all_hosts(self) -> list[Node]:
        return list(self.nodes.values())

    def get_replicas(self, keyspace: str, key: bytes) -> list[Node]:
        even = struct.unpack(">q", key)[0] % 2 == 0
        return [self.nodes["a"], self.nodes["b"]] if even else [self.nodes["c"], self.nodes["b"]]


class Response:
    def __init__(self, error: BaseException | None, rows: list[Any]) -> None:
        self.error, self.rows = error, rows

    def add_callbacks(self, callback: Any, errback: Any) -> None:
        loop = asyncio.get_running_loop()
        loop.call_later(0.001, (lambda: errback(self.error)) if self.error else (lambda: callback(self.rows)))


@dataclass
class Session:
    cluster: Any = None
    requests: list[Any] = field(default_factory=list)
    fail_keys: set[int] = field(default_factory=set)  # a request holding a row of these users fails
    answer: Any = None

    def execute_async(self, stmt: Any, params: Any = None) -> Response:
        self.requests.append(stmt)
        statements = [stmt] if not isinstance(stmt, BatchStatement) else stmt._statements_and_parameters
        users = {struct.unpack(">q", s.values[0] if isinstance(s, BoundStatement) else s[2][0])[0]
                 for s in statements}
        error = WriteTimeout("x", write_type=WriteType.SIMPLE) if users & self.fail_keys else None
        return Response(error, self.answer(stmt) if self.answer else [])


def db(session: Session) -> Cassandra:
    settings = Settings.load(env={}, retry_attempts=1, retry_base_delay=0.001)
    return Cassandra(session, settings, Metrics())  # type: ignore[arg-type]


def rows_of(request: Any) -> int:
    return len(request._statements_and_parameters) if isinstance(request, BatchStatement) else 1


async def test_writes_of_one_iteration_go_out_together_in_full_batches() -> None:
    session = Session()
    writes = Writes(db(session), rows_per_batch=50, window=8)
    stmt = prepared()
    # 30 handlers, 10 rows each, all calling in the same iteration: 300 rows in 6 batches of 50.
    counts = await asyncio.gather(*(writes.write([(stmt, (h * 100 + i, 1)) for i in range(10)]) for h in range(30)))
    assert counts == [10] * 30
    assert [rows_of(r) for r in session.requests] == [50] * 6


async def test_a_lone_row_is_sent_as_itself_and_later_calls_form_a_new_flush() -> None:
    session = Session()
    writes = Writes(db(session), rows_per_batch=50, window=8)
    await writes.write([(prepared(), (1, 1))])
    await writes.write([(prepared(), (2, 1)), (prepared(), (3, 1))])
    assert isinstance(session.requests[0], BoundStatement)
    assert [rows_of(r) for r in session.requests] == [1, 2]


async def test_rows_are_batched_only_with_rows_of_the_same_replica_set() -> None:
    session = Session(cluster=type("C", (), {"metadata": Metadata()})())
    writes = Writes(db(session), rows_per_batch=50, window=8)
    await writes.write([(prepared(), (user, 1)) for user in range(40)])
    assert sorted(rows_of(r) for r in session.requests) == [20, 20]
    for request in session.requests:
        users = {struct.unpack(">q", s[2][0])[0] % 2 for s in request._statements_and_parameters}
        assert len(users) == 1  # all even or all odd: one replica set per batch
        # routed by its first row: a replica of every row in the batch
        assert struct.unpack(">q", request.routing_key)[0] % 2 in users


async def test_batches_are_cut_by_size_as_well_as_by_count() -> None:
    session = Session()
    writes = Writes(db(session), rows_per_batch=50, window=8)
    posts = prepared([("post_id", LongType), ("body", _Blob)])
    await writes.write([(posts, (i, b"x" * 10_000)) for i in range(10)])  # ~100 KB of bodies
    assert sum(rows_of(r) for r in session.requests) == 10
    assert all(rows_of(r) * 10_000 <= MAX_BATCH_BYTES for r in session.requests)


async def test_an_atomic_write_travels_whole_in_one_batch_with_other_rows() -> None:
    session = Session()
    writes = Writes(db(session), rows_per_batch=5, window=8)
    stmt = prepared()
    commit = [(stmt, (500, i)) for i in range(8)]  # one partition's commit: more than a batch's rows
    await asyncio.gather(writes.write([(stmt, (i, 1)) for i in range(3)]), writes.write(commit, atomic=True),
                         writes.write([(stmt, (i, 2)) for i in range(4)]))
    batches = [{tuple(struct.unpack(">q", v)[0] for v in s[2][:2]) for s in r._statements_and_parameters}
               for r in session.requests if isinstance(r, BatchStatement)]
    assert [b for b in batches if (500, 0) in b] == [{(500, i) for i in range(8)}]  # whole, alone
    assert sum(rows_of(r) for r in session.requests) == 15


async def test_a_failed_batch_fails_only_the_callers_with_rows_in_it() -> None:
    session = Session(fail_keys={7})
    writes = Writes(db(session), rows_per_batch=2, window=8)
    stmt = prepared()
    results = await asyncio.gather(writes.write([(stmt, (1, 1)), (stmt, (2, 1))]),
                                   writes.write([(stmt, (7, 1)), (stmt, (8, 1))]),
                                   writes.write([(stmt, (9, 1))]), return_exceptions=True)
    assert results[0] == 2 and results[2] == 1
    assert isinstance(results[1], WriteTimeout)


async def test_no_caller_returns_before_its_rows_are_written() -> None:
    session = Session()
    writes = Writes(db(session), rows_per_batch=5, window=1)  # one request at a time: settles one by one
    stmt = prepared()
    done: list[int] = []

    async def caller(n: int) -> None:
        await writes.write([(stmt, (n * 10 + i, 1)) for i in range(5)])
        done.append(len(session.requests))

    await asyncio.gather(*(caller(n) for n in range(4)))
    assert done == [4, 4, 4, 4]  # every caller woke after the last request of the flush was answered


async def test_loads_of_one_iteration_become_one_query_per_replica_group() -> None:
    session = Session(cluster=type("C", (), {"metadata": Metadata()})())
    fetched: list[list[int]] = []

    async def fetch(keys: list[int]) -> dict[int, str]:
        fetched.append(sorted(keys))
        return {k: f"v{k}" for k in keys if k != 4}

    loader: Loader[int, str] = Loader(db(session), fetch, bigint_key, keys_per_request=3)
    values = await asyncio.gather(*(loader.load(k) for k in [1, 2, 3, 4, 5, 6, 2]))
    assert values == ["v1", "v2", "v3", None, "v5", "v6", "v2"]
    assert sorted(fetched) == [[1, 3, 5], [2, 4, 6]]  # odd and even keys: two replica sets, no key twice


async def test_an_unexpected_error_in_a_flush_reaches_its_callers() -> None:
    class Broken:
        def all_hosts(self) -> list[Node]:
            return [Node("a"), Node("b")]

        def get_replicas(self, keyspace: str, key: bytes) -> list[Node]:
            raise RuntimeError("token map")

    writes = Writes(db(Session(cluster=type("C", (), {"metadata": Broken()})())), rows_per_batch=5, window=1)
    with pytest.raises(RuntimeError, match="token map"):
        await asyncio.wait_for(writes.write([(prepared(), (1, 1))]), 5)


async def test_a_failed_load_fails_its_callers() -> None:
    async def fetch(keys: list[int]) -> dict[int, str]:
        raise ConnectionError("down")

    loader: Loader[int, str] = Loader(db(Session()), fetch, bigint_key, keys_per_request=3)
    with pytest.raises(ConnectionError):
        await loader.load(1)


class _Blob(LongType):
    """A column whose values are bytes as given (only the size matters here)."""

    @staticmethod
    def serialize(value: bytes, protocol_version: int) -> bytes:
        return value


async def test_bulk_requests_keep_to_their_contended_window_only_while_a_foreground_flush_runs() -> None:
    gate = BulkGate(contended=2)
    for _ in range(5):  # alone: only the caller's own window limits them
        await gate.admit()
    assert gate.in_flight == 5
    for _ in range(5):
        gate.release()
    with gate.foreground_flush():
        await gate.admit()
        await gate.admit()
        third = asyncio.ensure_future(gate.admit())
        await asyncio.sleep(0)
        assert not third.done()
        gate.release()
        await asyncio.sleep(0)
        assert third.done()
        fourth = asyncio.ensure_future(gate.admit())
        await asyncio.sleep(0)
        assert not fourth.done()
    await asyncio.sleep(0)
    assert fourth.done() and gate.in_flight == 3  # the foreground flush ended: no limit again


class SlowResponse(Response):
    def __init__(self, session: TimedSession, bulk: bool, seconds: float) -> None:
        super().__init__(None, [])
        self.session, self.bulk, self.seconds = session, bulk, seconds

    def add_callbacks(self, callback: Any, errback: Any) -> None:
        def done() -> None:
            self.session.in_flight[self.bulk] -= 1
            callback([])

        asyncio.get_running_loop().call_later(self.seconds, done)


@dataclass
class TimedSession(Session):
    """Users below 1000 are a chunk task's rows (bulk), the others an event's; records how many bulk requests
    were in flight whenever one started while an event's request was."""

    in_flight: dict[bool, int] = field(default_factory=lambda: {False: 0, True: 0})
    bulk_beside_foreground: list[int] = field(default_factory=list)

    def execute_async(self, stmt: Any, params: Any = None) -> Response:
        self.requests.append(stmt)
        bulk = struct.unpack(">q", stmt.values[0])[0] < 1000
        self.in_flight[bulk] += 1
        if bulk and self.in_flight[False]:
            self.bulk_beside_foreground.append(self.in_flight[True])
        return SlowResponse(self, bulk, 0.002 if bulk else 0.05)


async def test_a_chunk_tasks_rows_yield_to_an_events_rows_and_are_all_written() -> None:
    session = TimedSession()
    writes = Writes(db(session), rows_per_batch=1, window=16, bulk_window=2)
    stmt = prepared()

    async def chunk_task() -> int:
        with bulk_work():
            return await writes.write([(stmt, (user, 1)) for user in range(200)])

    async def event() -> int:
        await asyncio.sleep(0.005)  # arrives while the chunk task's rows are in flight
        return await writes.write([(stmt, (1000 + user, 2)) for user in range(3)])

    assert await asyncio.gather(chunk_task(), event()) == [200, 3]
    assert len(session.requests) == 203
    assert session.bulk_beside_foreground and max(session.bulk_beside_foreground) <= 2



def test_the_bulk_limit_falls_while_latency_exceeds_its_tolerance_and_grows_back_at_the_floor() -> None:
    clock = ManualClock()
    limit = LatencyLimit(ceiling=64, tolerance=2.0, clock=clock)
    limit.observe(0.002)  # the floor: what a request costs with no queue
    assert limit.allowed() == 64
    for _ in range(100):  # queued: 5x the floor
        limit.observe(0.010)
    assert limit.allowed() <= 8
    for _ in range(20):  # within the tolerance (1.5x): no cut, so it grows
        before = limit.limit
        limit.observe(0.003)
        assert limit.limit > before
    for _ in range(200):
        limit.observe(0.002)
    assert limit.allowed() == 64  # never above the window it was given


def test_the_bulk_latency_floor_is_relearned_once_two_of_its_windows_have_passed() -> None:
    clock = ManualClock()
    limit = LatencyLimit(ceiling=64, tolerance=2.0, clock=clock)
    limit.observe(0.001)
    clock.now += LatencyLimit.FLOOR_SECONDS + 0.1
    limit.observe(0.005)
    assert limit.floor == 0.001  # the window before still counts
    clock.now += LatencyLimit.FLOOR_SECONDS + 0.1
    limit.observe(0.005)
    assert limit.floor == 0.005  # the node became slower for good: that is its floor now
    for _ in range(200):
        limit.observe(0.005)
    assert limit.allowed() == 64


def test_the_bulk_limit_stays_between_its_lowest_and_the_window() -> None:
    limit = LatencyLimit(ceiling=16, tolerance=2.0, clock=ManualClock())
    limit.observe(0.001)
    for _ in range(500):
        limit.observe(10.0)  # requests that time out
    # each verdict at most halves it and allows a queue of its square root: 4 is where those meet
    assert LatencyLimit.LOWEST <= limit.allowed() <= 4


class QueueingResponse(Response):
    def __init__(self, session: QueueingSession) -> None:
        super().__init__(None, [])
        self.session = session

    def add_callbacks(self, callback: Any, errback: Any) -> None:
        def done() -> None:
            self.session.in_flight -= 1
            callback([])

        # a node that serves one request at a time: each waits for those ahead of it
        asyncio.get_running_loop().call_later(0.001 * self.session.in_flight, done)


@dataclass
class QueueingSession(Session):
    in_flight: int = 0
    seen_in_flight: list[int] = field(default_factory=list)

    def execute_async(self, stmt: Any, params: Any = None) -> Response:
        self.requests.append(stmt)
        self.in_flight += 1
        self.seen_in_flight.append(self.in_flight)
        return QueueingResponse(self)


async def test_a_chunk_task_keeps_few_requests_queued_at_a_node_that_serves_one_at_a_time() -> None:
    fixed, adaptive = QueueingSession(), QueueingSession()
    stmt = prepared()
    for session, tolerance in ((fixed, 0.0), (adaptive, 2.0)):
        writes = Writes(db(session), rows_per_batch=1, window=32, bulk_latency_tolerance=tolerance)
        with bulk_work():
            assert await writes.write([(stmt, (user, 1)) for user in range(600)]) == 600
    assert max(fixed.seen_in_flight) == 32  # the whole window queued at the node
    settled = adaptive.seen_in_flight[200:]
    assert sorted(settled)[len(settled) // 2] <= 6  # the median queue, once the limit has settled
