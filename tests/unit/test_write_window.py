"""The write path's sliding window and retries (fanout/adapters/cassandra/session.py), over a fake driver session.

The fake answers `execute_async` like cassandra-driver's ResponseFuture: callbacks fire later, either on
the event loop (`loop.call_later`) or from another thread, as the driver's I/O thread does.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from cassandra import InvalidRequest, OperationTimedOut, ReadTimeout, Unauthorized, Unavailable, WriteTimeout, WriteType
from cassandra.cluster import NoHostAvailable

from fanout.adapters.cassandra.session import Cassandra
from fanout.metrics import Metrics, sample
from fanout.settings import Settings

ATTEMPTS = 3
Outcome = Callable[[int, int], BaseException | None]  # (request key, attempt number) -> error or success


def write_timeout() -> WriteTimeout:
    # This driver version's write_timeout() raises KeyError: a write_type is required.
    return WriteTimeout("x", write_type=WriteType.SIMPLE)


def succeed(key: int, attempt: int) -> BaseException | None:
    return None


class FakeResponse:
    def __init__(self, session: FakeSession, key: int, error: BaseException | None, delay: float) -> None:
        self.session, self.key, self.error, self.delay = session, key, error, delay

    def add_callbacks(self, callback: Callable[[Any], None], errback: Callable[[BaseException], None]) -> None:
        def complete() -> None:
            self.session.settle(self.key, self.error)
            if self.error is None:
                callback([("row", self.key)])
            else:
                errback(self.error)

        if self.session.threaded:
            threading.Timer(self.delay, complete).start()
        else:
            asyncio.get_running_loop().call_later(self.delay, complete)


class FakeSession:
    """Counts attempts per request and how many are in flight; `outcome` scripts failures."""

    def __init__(self, threaded: bool = False, outcome: Outcome = succeed,
                 delay: Callable[[int], float] = lambda key: random.uniform(0, 0.002)) -> None:
        self.threaded = threaded
        self.outcome = outcome
        self.delay = delay
        self.lock = threading.Lock()
        self.attempts: Counter[int] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.log: list[tuple[str, int]] = []

    def execute_async(self, stmt: Any, params: Sequence[Any] | None = None) -> FakeResponse:
        key = params[0] if params else 0
        with self.lock:
            self.attempts[key] += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.log.append(("start", key))
            attempt = self.attempts[key]
        return FakeResponse(self, key, self.outcome(key, attempt), self.delay(key))

    def settle(self, key: int, error: BaseException | None) -> None:
        with self.lock:
            self.in_flight -= 1
            self.log.append(("ok" if error is None else "error", key))

    @property
    def started(self) -> int:
        return sum(self.attempts.values())


def cassandra(session: FakeSession) -> Cassandra:
    settings = Settings.load(env={}, retry_attempts=ATTEMPTS, retry_base_delay=0.001)
    return Cassandra(session=session, settings=settings, metrics=Metrics())  # type: ignore[arg-type]


def requests(n: int) -> list[tuple[str, tuple[int]]]:
    return [("INSERT", (i,)) for i in range(n)]


def retries(db: Cassandra) -> float:
    return sample(db.metrics, "fanout_cassandra_retries_total")


def errors(db: Cassandra, error: str) -> float:
    return sample(db.metrics, "fanout_cassandra_errors_total", {"error": error})


# --- the window ------------------------------------------------------------------------------------


@pytest.mark.parametrize("threaded", [False, True], ids=["loop", "thread"])
@pytest.mark.parametrize("window", [1, 4, 16])
async def test_window_bounds_requests_in_flight_and_each_runs_once(window: int, threaded: bool) -> None:
    session = FakeSession(threaded=threaded)
    db = cassandra(session)
    assert await db.run_window(requests(200), window) == 200
    assert session.max_in_flight <= window
    assert session.attempts == Counter(range(200))
    assert session.in_flight == 0


@pytest.mark.parametrize("window", [1, 4, 16])
async def test_window_fills_up_to_its_size(window: int) -> None:
    # On the loop, callbacks cannot fire before every task of a burst has sent its request.
    session = FakeSession(threaded=False)
    await cassandra(session).run_window(requests(200), window)
    assert session.max_in_flight == window


async def test_window_larger_than_the_requests_runs_them_all() -> None:
    session = FakeSession()
    assert await cassandra(session).run_window(requests(3), 64) == 3
    assert session.attempts == Counter(range(3))


async def test_no_requests_is_zero() -> None:
    session = FakeSession()
    assert await cassandra(session).run_window(iter([]), 8) == 0
    assert session.started == 0


async def test_requests_are_consumed_lazily_from_a_generator() -> None:
    session = FakeSession(delay=lambda key: 0.001)
    seen_in_flight: list[int] = []

    def lazy() -> Any:
        for stmt, params in requests(50):
            seen_in_flight.append(session.in_flight)
            yield stmt, params

    assert await cassandra(session).run_window(lazy(), 5) == 50
    assert max(seen_in_flight) < 5  # the next request is pulled only when a slot is free


# --- retries inside the window ---------------------------------------------------------------------


@pytest.mark.parametrize("threaded", [False, True], ids=["loop", "thread"])
@pytest.mark.parametrize("transient", [write_timeout(), OperationTimedOut()], ids=lambda e: type(e).__name__)
async def test_transient_error_is_retried_then_succeeds(transient: Exception, threaded: bool) -> None:
    session = FakeSession(threaded=threaded, outcome=lambda key, n: transient if key == 5 and n < ATTEMPTS else None)
    db = cassandra(session)
    assert await db.run_window(requests(20), 4) == 20
    assert session.attempts[5] == ATTEMPTS
    assert session.attempts - Counter({5: ATTEMPTS - 1}) == Counter(range(20))
    assert retries(db) == ATTEMPTS - 1
    assert errors(db, type(transient).__name__) == ATTEMPTS - 1


@pytest.mark.parametrize("threaded", [False, True], ids=["loop", "thread"])
async def test_error_after_the_last_attempt_is_raised(threaded: bool) -> None:
    session = FakeSession(threaded=threaded, outcome=lambda key, n: write_timeout() if key == 5 else None)
    db = cassandra(session)
    with pytest.raises(WriteTimeout):
        await db.run_window(requests(20), 4)
    assert session.attempts[5] == ATTEMPTS
    assert retries(db) == ATTEMPTS - 1
    assert errors(db, "WriteTimeout") == ATTEMPTS


@pytest.mark.parametrize(
    "error",
    [ValueError("bad"), InvalidRequest("syntax"), RuntimeError("bug")],
    ids=lambda e: type(e).__name__,
)
async def test_non_transient_error_is_raised_without_retry(error: Exception) -> None:
    session = FakeSession(outcome=lambda key, n: error if key == 0 else None)
    db = cassandra(session)
    with pytest.raises(type(error)):
        await db.run_window(requests(3), 2)
    assert session.attempts[0] == 1
    assert retries(db) == 0


@pytest.mark.parametrize(
    "failure",
    [lambda key, n: ValueError("bad") if key == 0 else None, lambda key, n: write_timeout() if key == 0 else None],
    ids=["non_transient", "retries_exhausted"],
)
async def test_after_a_failure_no_new_request_starts_and_in_flight_ones_settle_first(failure: Outcome) -> None:
    # Request 0 fails fast (also through its retries); the others are slow, so all of them are still
    # in flight when it fails: nothing beyond the first window may start, and all of it must settle.
    window = 4
    session = FakeSession(outcome=failure, delay=lambda key: 0.0005 if key == 0 else 0.05)
    with pytest.raises((ValueError, WriteTimeout)):
        await cassandra(session).run_window(requests(1000), window)
    assert set(session.attempts) == set(range(window))
    assert session.in_flight == 0
    assert Counter(key for event, key in session.log if event == "start") == session.attempts
    assert len([e for e in session.log if e[0] != "start"]) == session.started  # every attempt settled


async def test_the_first_error_is_the_one_raised() -> None:
    first, second = ValueError("first"), ValueError("second")
    session = FakeSession(outcome=lambda key, n: {0: first, 1: second}.get(key),
                          delay=lambda key: {0: 0.001, 1: 0.01}.get(key, 0.02))
    with pytest.raises(ValueError) as info:
        await cassandra(session).run_window(requests(10), 3)
    assert info.value is first


# --- retrying on its own ---------------------------------------------------------------------------


TRANSIENT = [write_timeout(), ReadTimeout("x"), Unavailable("x"), OperationTimedOut(),
             NoHostAvailable("x", {}), ConnectionResetError(),
             # what a loaded 3-node cluster answered a benchmark's import, and the server timeout it stands for
             Unauthorized('Error from server: code=2100 [Unauthorized] message="Unable to perform authorization '
                          'of permissions: Operation timed out - received only 1 responses."')]


def failing(times: int, error: BaseException) -> tuple[Callable[[], Any], list[int]]:
    """An attempt that fails `times` times with `error`, then returns 42; and its call counter."""
    calls = [0]

    async def attempt() -> int:
        calls[0] += 1
        if calls[0] <= times:
            raise error
        return 42

    return attempt, calls


@pytest.mark.parametrize("error", TRANSIENT, ids=lambda e: type(e).__name__)
async def test_retrying_retries_transient_errors(error: Exception) -> None:
    db = cassandra(FakeSession())
    attempt, calls = failing(ATTEMPTS - 1, error)
    assert await db.retrying(attempt) == 42
    assert calls[0] == ATTEMPTS
    assert retries(db) == ATTEMPTS - 1


@pytest.mark.parametrize("error", TRANSIENT, ids=lambda e: type(e).__name__)
async def test_retrying_raises_after_the_last_attempt(error: Exception) -> None:
    db = cassandra(FakeSession())
    attempt, calls = failing(ATTEMPTS, error)
    with pytest.raises(type(error)):
        await db.retrying(attempt)
    assert calls[0] == ATTEMPTS
    assert retries(db) == ATTEMPTS - 1
    assert errors(db, type(error).__name__) == ATTEMPTS


@pytest.mark.parametrize("error", [ValueError("x"), KeyError("x"), InvalidRequest("x"),
                                   Unauthorized("User worker has no MODIFY permission on <table ks.inbox>")],
                         ids=lambda e: type(e).__name__)
async def test_retrying_does_not_retry_other_errors(error: Exception) -> None:
    db = cassandra(FakeSession())
    attempt, calls = failing(1, error)
    with pytest.raises(type(error)):
        await db.retrying(attempt)
    assert calls[0] == 1
    assert retries(db) == 0


async def test_run_returns_the_rows_through_the_driver_callback() -> None:
    session = FakeSession(threaded=True)
    assert await cassandra(session).run("SELECT", (7,)) == [("row", 7)]
