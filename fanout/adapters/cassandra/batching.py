"""Coalescing: the requests of handlers running concurrently, sent as few full requests (the DataLoader pattern).

The driver spends far more client CPU per request than per row of a batch (BENCHMARKS.md, the bare
cassandra-driver limits of `fanout bench`), and most posts reach tens of followers: the number of requests,
not of rows, bounds the worker. The runner runs the authors of a batch of events concurrently, so at any
moment many handlers are about to make the same kind of call. A call here is not sent at once: every call
made in the same event-loop iteration is gathered, and the flush runs on the next iteration (after every
handler that was ready has run up to its next await), as few requests as possible:

- writes (inbox rows, posts and their timeline entries, follower-side rows) as unlogged batches of up to
  `rows_per_batch` statements, grouped by replica set (`Cassandra.replica_group`, see there why);
- point reads by partition key as one `IN` query per replica group (`Loader`).

Bulk writes (`fanout.core.ports.bulk_work`: a chunk task's inbox rows) are flushed apart from the rest and pass a
`BulkGate`: while a flush of the event path's own writes is in flight they keep at most `bulk_window`
requests in flight, not `window`. Cassandra serves a node's requests in arrival order, so otherwise a post to
a few followers waits behind every batch of a big fan-out already queued (~120 ms for a window of 64 batches
of 50 rows on one node). Alone, bulk writes use the whole window; with a `LatencyLimit`
(FANOUT_BULK_LATENCY_TOLERANCE > 0) only as many requests as Cassandra serves without queueing them, so the
writes of other processes (the notifier's) wait behind a shorter queue, and bulk rows/s fall with it.

A caller's await returns when the whole flush has settled, not when its own request has: handlers woken
together reach their next call together and coalesce again (a stage-synchronous pipeline; every request
of a flush is in flight at once, so this costs the slowest request of the flush, not a sum). It returns
only once the caller's own rows are written, or raises if any of them failed after the retries: the
runner's ack rule is unchanged, nothing is committed past a row not yet written.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Hashable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

from cassandra.query import BatchStatement, BatchType, BoundStatement, PreparedStatement

from fanout.adapters.cassandra.session import Cassandra
from fanout.core.ports import is_bulk_work
from fanout.settling import settling

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
Write = tuple[PreparedStatement, Sequence[Any]]

# Cassandra refuses a batch above batch_size_fail_threshold (50 KiB by default; the local stack raises it):
# posts carry bodies of up to 5,000 characters, so batches are cut by size as well as by count.
MAX_BATCH_BYTES = 32 * 1024


class LatencyLimit:
    """How many bulk requests may be in flight: TCP Vegas's rule applied to request latency (as in Netflix's
    concurrency-limits). The lowest latency of the last FLOOR_SECONDS or so is what a request costs with no
    queue; while requests take longer than `tolerance` times that, the limit falls in proportion, otherwise it
    grows by its square root per request. Every other client's write (the notifier's, the next post's) waits
    in the queue that bulk requests make at the node, so the limit trades bulk rows/s for a shorter one."""

    FLOOR_SECONDS = 10.0  # the floor is the lowest latency of this window and the one before it
    SMOOTHING = 0.2  # weight of each request's verdict
    LOWEST = 2

    def __init__(self, ceiling: int, tolerance: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ceiling = max(self.LOWEST, ceiling)
        self.tolerance = tolerance
        self.clock = clock
        self.limit = float(self.ceiling)
        self._floors = [math.inf, math.inf]  # lowest latency of the window before and of this one
        self._window_ends = clock() + self.FLOOR_SECONDS

    @property
    def floor(self) -> float:
        return min(self._floors)

    def allowed(self) -> int:
        return int(self.limit)

    def observe(self, seconds: float) -> None:
        now = self.clock()
        if now >= self._window_ends:  # a floor expires, so a node that became slower for good is relearned
            self._floors = [self._floors[1], math.inf]
            self._window_ends = now + self.FLOOR_SECONDS
        self._floors[1] = min(self._floors[1], seconds)
        gradient = min(1.0, max(0.5, self.tolerance * self.floor / max(seconds, 1e-6)))
        target = self.limit * gradient + math.sqrt(self.limit)
        self.limit = min(float(self.ceiling), max(float(self.LOWEST),
                                                  self.limit + self.SMOOTHING * (target - self.limit)))


class BulkGate:
    """Admits bulk requests: up to `adaptive`'s limit (or any number, when there is none) while no foreground
    flush is in flight, at most `contended` (and that limit) while one is."""

    def __init__(self, contended: int, adaptive: LatencyLimit | None = None) -> None:
        self.contended = max(1, contended)
        self.adaptive = adaptive
        self.foreground = 0  # foreground flushes in flight
        self.in_flight = 0  # bulk requests in flight
        self._waiting: list[asyncio.Future[None]] = []

    @contextmanager
    def foreground_flush(self) -> Iterator[None]:
        self.foreground += 1
        try:
            yield
        finally:
            self.foreground -= 1
            self._wake()

    def allowed(self) -> float:
        alone = math.inf if self.adaptive is None else self.adaptive.allowed()
        return min(self.contended, alone) if self.foreground else alone

    async def admit(self) -> None:
        while self.in_flight >= self.allowed():
            waiter = asyncio.get_running_loop().create_future()
            self._waiting.append(waiter)
            await waiter
        self.in_flight += 1

    def release(self, seconds: float | None = None) -> None:
        """One admitted request ended, after `seconds` (None: it never reached the node)."""
        self.in_flight -= 1
        if seconds is not None and self.adaptive is not None:
            self.adaptive.observe(seconds)
        self._wake()

    def _wake(self) -> None:
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            if not waiter.done():
                waiter.set_result(None)


class Writes:
    """Every write of the adapter goes through `write`: coalesced into token-aware unlogged batches."""

    def __init__(self, db: Cassandra, rows_per_batch: int, window: int, bulk_window: int | None = None,
                 bulk_latency_tolerance: float = 0.0) -> None:
        """`bulk_latency_tolerance` > 0: bulk requests in flight follow a `LatencyLimit` of that tolerance."""
        self.db = db
        self.rows_per_batch = max(1, rows_per_batch)
        self.window = window
        adaptive = LatencyLimit(window, bulk_latency_tolerance) if bulk_latency_tolerance > 0 else None
        self.bulk_gate = BulkGate(bulk_window or window, adaptive)
        db.metrics.bulk_requests_allowed.set_function(lambda: adaptive.limit if adaptive else window)
        # Pending calls of this event-loop iteration: the event path's (False) and bulk ones (True).
        self._pending: dict[bool, list[tuple[list[BoundStatement], bool, asyncio.Future[None]]]] = {
            False: [], True: []}

    async def write(self, writes: Iterable[Write], atomic: bool = False) -> int:
        """Write these statements (in any order, like a gather); returns how many. Returns when they are
        written, raises if one of them could not be.

        `atomic`: the statements are of one partition and must be applied as one mutation (a commit
        point). They travel whole in one batch, possibly with other rows: Cassandra applies the updates of
        a batch to one partition atomically and in isolation, logged batch or not, so coalescing the
        commits of many authors keeps each one atomic."""
        bound = [stmt.bind(params) for stmt, params in writes]
        if not bound:
            return 0
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        bulk = is_bulk_work()
        if not self._pending[bulk]:
            asyncio.get_running_loop().call_soon(self._flush, bulk)
        self._pending[bulk].append((bound, atomic, future))
        await future
        return len(bound)

    def _flush(self, bulk: bool) -> None:
        pending, self._pending[bulk] = self._pending[bulk], []
        asyncio.ensure_future(settling(self._send(pending, bulk), [future for _, _, future in pending]))

    async def _send(self, pending: list[tuple[list[BoundStatement], bool, asyncio.Future[None]]],
                    bulk: bool) -> None:
        groups: dict[Hashable, list[tuple[list[BoundStatement], int]]] = defaultdict(list)
        group_of = self.db.replica_grouper()
        for caller, (bound, atomic, _) in enumerate(pending):
            for unit in ([bound] if atomic else ([stmt] for stmt in bound)):
                groups[group_of(unit[0].routing_key)].append((unit, caller))
        requests: list[tuple[Any, set[int]]] = []
        for units in groups.values():
            requests.extend(self._batches(units))
        statements = [stmt for stmt, _ in requests]
        if bulk:
            failures = await self.db.run_all(statements, self.window, self.bulk_gate)
        else:
            with self.bulk_gate.foreground_flush():
                failures = await self.db.run_all(statements, self.window)
        failed_callers: dict[int, BaseException] = {}
        for (_, callers), error in zip(requests, failures, strict=True):
            if error is not None:
                failed_callers.update(dict.fromkeys(callers, error))
        for caller, (_, _, future) in enumerate(pending):
            error = failed_callers.get(caller)
            if future.done():
                continue
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)

    def _batches(self, units: list[tuple[list[BoundStatement], int]]) -> Iterable[tuple[Any, set[int]]]:
        """Unlogged batches of up to `rows_per_batch` statements and MAX_BATCH_BYTES of values, never
        splitting a unit (an atomic write may make a batch bigger); a lone statement is sent as itself (a
        batch of one costs more)."""
        chunk: list[tuple[BoundStatement, int]] = []
        size = 0
        for unit, caller in units:
            unit_bytes = sum(len(v) for stmt in unit for v in stmt.values if v)
            if chunk and (len(chunk) + len(unit) > self.rows_per_batch or size + unit_bytes > MAX_BATCH_BYTES):
                yield self._request(chunk)
                chunk, size = [], 0
            chunk.extend((stmt, caller) for stmt in unit)
            size += unit_bytes
        if chunk:
            yield self._request(chunk)

    @staticmethod
    def _request(chunk: list[tuple[BoundStatement, int]]) -> tuple[Any, set[int]]:
        callers = {caller for _, caller in chunk}
        if len(chunk) == 1:
            return chunk[0][0], callers
        batch = BatchStatement(batch_type=BatchType.UNLOGGED)
        for stmt, _ in chunk:
            batch.add(stmt)  # the first row's routing key routes the batch: a replica of every row in it
        batch.is_idempotent = True
        return batch, callers


class Loader(Generic[K, V]):
    """Point reads by partition key, coalesced: `load(key)` calls of one iteration become one `fetch` per
    replica group, of at most `keys_per_request` keys each (an `IN` list; Cassandra's coordinator reads
    every listed partition, so lists stay short and local to one replica set)."""

    def __init__(self, db: Cassandra, fetch: Callable[[list[K]], Awaitable[dict[K, V]]],
                 routing_key: Callable[[K], bytes], keys_per_request: int) -> None:
        self.db = db
        self.fetch = fetch
        self.routing_key = routing_key
        self.keys_per_request = max(1, keys_per_request)
        self._keys: dict[K, None] = {}  # every key asked for in this iteration, once, in order
        self._waiters: list[asyncio.Future[dict[K, V]]] = []

    async def load(self, key: K) -> V | None:
        """The value of `key`, None if the store has none."""
        return (await self.load_many([key])).get(key)

    async def load_many(self, keys: Iterable[K]) -> dict[K, V]:
        """The values of these keys that the store has (one wait for all of them)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[K, V]] = loop.create_future()
        if not self._waiters:
            loop.call_soon(self._flush)
        self._keys.update(dict.fromkeys(keys))
        self._waiters.append(future)
        return await future

    def _flush(self) -> None:
        keys, waiters = list(self._keys), self._waiters
        self._keys, self._waiters = {}, []
        asyncio.ensure_future(settling(self._send(keys, waiters), waiters))

    async def _send(self, keys: list[K], waiters: list[asyncio.Future[dict[K, V]]]) -> None:
        groups: dict[Hashable, list[K]] = defaultdict(list)
        group_of = self.db.replica_grouper()
        for key in keys:
            groups[group_of(self.routing_key(key))].append(key)
        chunks = [group[i : i + self.keys_per_request] for group in groups.values()
                  for i in range(0, len(group), self.keys_per_request)]
        found: dict[K, V] = {}
        for result in await asyncio.gather(*(self.fetch(chunk) for chunk in chunks)):
            found.update(result)
        # Every caller gets the whole flush's answers (a dict it only reads by its own keys): no copy per
        # caller. A failed fetch fails them all (settling), as a failed request fails its rows' callers.
        for future in waiters:
            if not future.done():
                future.set_result(found)

