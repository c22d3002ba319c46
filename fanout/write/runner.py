"""The worker's batch runner: decode, dead-letter, group by author, handle with retries, park, and the way out.

Faust hands an agent batches of events and acknowledges a batch when the agent moves on to the next one.
The runner makes that safe (faust-streaming #606: with concurrency > 1 Faust can commit past an event
still in flight): the events of a batch are grouped by key (the author), groups run concurrently and
each group in order, and `run` returns only when every event of the batch is written or dead-lettered.

When a handler fails, fanout/adapters/failures.py decides whose fault it is:
- an outage (Cassandra or Kafka unreachable, a missing keyspace): the event is retried with backoff
  (capped at `outage_max_delay`) for as long as the outage lasts, up to `outage_timeout`; nothing is
  parked and nothing after it in its group runs, so nothing is acknowledged before it is written;
- the event's own failure: retried `attempts` times with backoff, then parked on the dead-letter topic
  with the reason (error class and message, attempts, source topic/partition/offset) and the group
  goes on, so one poisoned event never stalls its partition nor kills the workers it moves to.
`fanout dead-letters replay` re-publishes a parked event once it can succeed (handlers are idempotent).

Anything else ends in `stop`: an outage longer than `outage_timeout`, a dead-letter topic unreachable
that long, or a bug in the runner itself. By default `stop` ends the process at once, unacknowledged
(exit 75), and the restarted worker (`fanout up`'s supervisor, compose `restart:`) processes the batch
again; every write is idempotent, so that is safe.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol

import tenacity

from fanout import retries
from fanout.adapters.failures import is_outage
from fanout.core.events import Event, InvalidEvent
from fanout.metrics import Metrics
from fanout.settings import Settings

log = logging.getLogger(__name__)

# Exit code of a worker that stopped because an event could not be processed. The event was not
# acknowledged, so the restarted worker (compose `restart: unless-stopped`, `fanout up`) retries it.
EXIT_UNPROCESSED = 75
PARKED_REASON = "handler_error"  # the dead-letter reason of a parked event (malformed ones have others)


class Message(Protocol):
    partition: int
    offset: int


class Record(Protocol):
    """What the runner needs of a consumed event (Faust's EventT has these)."""

    key: bytes | None
    value: bytes | None
    message: Message


Decode = Callable[[bytes | None, bytes | None], Event]  # (value, key) -> event, or InvalidEvent
Handle = Callable[[Event], Awaitable[None]]
Headers = list[tuple[str, bytes]]
HandleGroup = Callable[[Sequence[Event]], Awaitable[None]]  # one key's events of a batch, in order
SendDeadLetter = Callable[[bytes | None, bytes | None, Headers], Awaitable[None]]
Stop = Callable[[str], NoReturn]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3  # tries of an event whose handler fails on its own account, then it is parked
    base_delay: float = 0.5  # first backoff, doubling
    outage_max_delay: float = 15.0  # longest backoff while a server is unreachable
    outage_timeout: float = 900.0  # an outage longer than this stops the worker (exit 75); 0: never

    @classmethod
    def of(cls, s: Settings) -> RetryPolicy:
        return cls(s.event_attempts, s.event_retry_delay, s.outage_max_delay, s.outage_timeout)

    def delay(self, retry: int) -> float:
        """Backoff before retry number `retry` (1, 2, ...)."""
        return retries.delay(retries.backoff(self.base_delay, self.outage_max_delay), retry)


class OutageTooLong(RuntimeError):
    """A server stayed unreachable for longer than the policy's outage_timeout."""


def stop_unacknowledged(reason: str) -> NoReturn:
    """End the worker now, without acknowledging anything in flight."""
    log.critical("%s; stopping the worker unacknowledged (exit %d)", reason, EXIT_UNPROCESSED, exc_info=True)
    logging.shutdown()
    os._exit(EXIT_UNPROCESSED)


def source_headers(record: Record, source: str) -> Headers:
    """Where a dead letter came from, and when it was written: enough to find the original and replay it."""
    return [
        ("source_topic", source.encode()),
        ("source_partition", str(record.message.partition).encode()),
        ("source_offset", str(record.message.offset).encode()),
        ("dead_lettered_at", str(time.time_ns() // 1_000_000).encode()),
    ]


def dead_letter_headers(record: Record, error: InvalidEvent, source: str) -> Headers:
    """A malformed event: the decoder's reason and detail."""
    return [("reason", error.reason.encode()), ("error", error.detail.encode()[:1000]), *source_headers(record, source)]


def parked_headers(record: Record, error: BaseException, attempts: int, source: str) -> Headers:
    """An event whose handler kept failing: the error's class and message, and how often it was tried."""
    return [("reason", PARKED_REASON.encode()), ("error", str(error).encode()[:1000]),
            ("error_class", type(error).__name__.encode()), ("attempts", str(attempts).encode()),
            *source_headers(record, source)]


class BatchRunner:
    def __init__(self, source: str, decode: Decode, handle: Handle, send_dead_letter: SendDeadLetter,
                 metrics: Metrics, policy: RetryPolicy | None = None, stop: Stop = stop_unacknowledged,
                 sleep: Sleep = asyncio.sleep, clock: Callable[[], float] = time.monotonic,
                 handle_group: HandleGroup | None = None) -> None:
        self.source = source
        self.decode = decode
        self.handle = handle
        # Given, it takes a key's whole run of events (still in order), so that the pipeline can write
        # consecutive events of one author together (fanout/write/pipeline.py `handle_group`).
        self.handle_group = handle_group
        self.send_dead_letter = send_dead_letter
        self.metrics = metrics
        self.policy = policy or RetryPolicy()
        self.stop = stop
        self.sleep = sleep
        self.clock = clock
        self._last_of_key: dict[Any, asyncio.Future[None]] = {}  # each key's latest group still in flight

    async def run(self, batch: Sequence[Record]) -> None:
        """Handle, park or dead-letter every record of the batch; returns only when all of it is done.

        Each key's events start only after that key's events of earlier batches still in flight are done, so
        batches may overlap (`InFlight`) and every author's events still run in order. The queueing happens
        before the first await: batches started in some order keep that order per key."""
        try:
            groups, invalid = self._decode_grouped(batch)
            queued = [self._after_earlier(key, group) for key, group in groups.items()]
            for record, error in invalid:
                await self._send_dead_letter(record, dead_letter_headers(record, error, self.source))
            outcomes = await asyncio.gather(*queued, return_exceptions=True)
        except Exception:
            self.stop(f"could not finish a batch from {self.source}")
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        if failed:
            try:
                raise failed[0]
            except BaseException:  # re-raised so that `stop` logs it with its traceback
                self.stop(f"could not process an event from {self.source}")
        self.metrics.last_batch.labels(self.source).set(time.time())

    def _decode_grouped(self, batch: Sequence[Record]) -> tuple[dict[Any, list[tuple[Record, Event]]],
                                                                  list[tuple[Record, InvalidEvent]]]:
        by_key: dict[Any, list[tuple[Record, Event]]] = defaultdict(list)
        invalid: list[tuple[Record, InvalidEvent]] = []
        for record in batch:
            try:
                by_key[record.key].append((record, self.decode(record.value, record.key)))
            except InvalidEvent as error:
                self.metrics.dead_lettered.labels(error.reason).inc()
                log.warning("dead-lettered an event from %s[%s]@%s: %s", self.source, record.message.partition,
                            record.message.offset, error)
                invalid.append((record, error))
        return by_key, invalid

    def _after_earlier(self, key: Any, group: list[tuple[Record, Event]]) -> asyncio.Future[None]:
        """Run the group once the same key's group of an earlier batch is done (now if there is none)."""
        earlier = self._last_of_key.get(key)

        async def run() -> None:
            try:
                if earlier is not None:
                    await asyncio.wait([earlier])  # its outcome is its own batch's to report
                await self._in_order(group)
            finally:
                if self._last_of_key.get(key) is task:
                    del self._last_of_key[key]

        task = asyncio.ensure_future(run())
        self._last_of_key[key] = task
        return task

    async def _in_order(self, group: list[tuple[Record, Event]]) -> None:
        if self.handle_group is not None and len(group) > 1:
            # The fast path: the key's events together (e.g. an author's run of follows, decided in order and
            # committed at once). If that fails, the events go one by one below, each with the retry and
            # park rules: handlers are idempotent, so what the group wrote before failing is written again.
            try:
                await self.handle_group([event for _, event in group])
                return
            except Exception as error:
                log.warning("%d events of one key from %s failed together (%s: %s); handling them one by one",
                            len(group), self.source, type(error).__name__, error)
        for record, event in group:
            await self._handle(record, event)

    async def _handle(self, record: Record, event: Event) -> None:
        """Handle one event: retry an outage until it ends, an error of the event's own a few times, then park it."""
        try:
            await self.handle(event)  # nearly every event: no retry machinery at all (fanout/retries.py)
            return
        except Exception as error:
            first = error
        what = f"{event.TYPE} from {self.source}[{record.message.partition}]@{record.message.offset}"
        tries = Tries(self, what, self.policy.attempts)
        try:
            await retries.after_failure(first, lambda: self.handle(event), tries.retrying())
        except InvalidEvent as error:  # the handler found the event itself wrong: no retry will help
            self.metrics.dead_lettered.labels(error.reason).inc()
            log.error("dead-lettered %s from %s[%s]@%s: %s", event.TYPE, self.source, record.message.partition,
                      record.message.offset, error.detail)
            await self._send_dead_letter(record, dead_letter_headers(record, error, self.source))
        except Exception as error:
            tries.raise_if_outage(error)
            await self._park(record, event, error, tries.failures)

    async def _park(self, record: Record, event: Event, error: BaseException, attempts: int) -> None:
        self.metrics.dead_lettered.labels(PARKED_REASON).inc()
        self.metrics.parked.labels(type(error).__name__).inc()
        log.error("parked %s from %s[%s]@%s after %d tries: %s: %s", event.TYPE, self.source,
                  record.message.partition, record.message.offset, attempts, type(error).__name__, error)
        await self._send_dead_letter(record, parked_headers(record, error, attempts, self.source))

    async def _send_dead_letter(self, record: Record, headers: Headers) -> None:
        """Send to the dead-letter topic, waiting out a Kafka outage like any other."""
        try:
            await self.send_dead_letter(record.key, record.value, headers)
            return
        except Exception as error:
            first = error
        tries = Tries(self, f"a dead letter from {self.source}", attempts=1)
        try:
            await retries.after_failure(first, lambda: self.send_dead_letter(record.key, record.value, headers),
                                tries.retrying())
        except Exception as error:
            tries.raise_if_outage(error)
            raise


Ack = Callable[[Record], Awaitable[Any]]


class InFlight:
    """Up to `depth` batches of one runner in flight at once, each acknowledged only after it and every batch
    taken before it are done.

    One batch at a time leaves the worker waiting on its slowest author: the cores sit partly idle while a
    few last writes of the batch are out. With the next batches started meanwhile, their
    authors' calls join the same coalesced requests (fanout/adapters/cassandra/batching.py). The ack rule is
    unchanged: batches are acknowledged in the order they were taken, so each partition's acknowledged
    offsets stay one unbroken run from its committed offset, and Faust commits nothing past an event not yet
    written (it commits the run of acknowledged offsets that follows the committed one). The runner keeps
    each key's events in order across batches (`BatchRunner.run`). `depth` is FANOUT_BATCHES_IN_FLIGHT, 1 by
    default: one batch at a time (fanout/settings.py says why)."""

    def __init__(self, runner: BatchRunner, ack: Ack, depth: int) -> None:
        if depth < 1:
            raise ValueError(f"batches in flight must be at least 1, not {depth}")
        self.runner = runner
        self.ack = ack
        self.depth = depth
        self._batches: collections.deque[asyncio.Future[None]] = collections.deque()

    async def submit(self, batch: Sequence[Record]) -> None:
        """Start the batch; returns once fewer than `depth` batches are in flight (this one included)."""
        earlier = self._batches[-1] if self._batches else None
        self._batches.append(asyncio.ensure_future(self._run(batch, earlier)))
        while len(self._batches) >= self.depth:
            await self._batches.popleft()  # a batch that failed raises here (the runner has stopped the worker)

    async def drain(self) -> None:
        """Wait for every batch in flight."""
        while self._batches:
            await self._batches.popleft()

    def cancel(self) -> None:
        """Abandon the batches in flight: nothing more is acknowledged, so their events come again."""
        for batch in self._batches:
            batch.cancel()
        self._batches.clear()

    async def _run(self, batch: Sequence[Record], earlier: asyncio.Future[None] | None) -> None:
        await self.runner.run(batch)
        if earlier is not None:
            await earlier  # raises if it failed or was cancelled: then this batch is not acknowledged either
        for record in batch:
            await self.ack(record)


class Tries:
    """When one event (or one dead letter) is tried again, on tenacity: through an outage (`is_outage`) for
    as long as it lasts, up to the policy's outage_timeout; after an error of its own, until `attempts`
    tries have failed so; never after an InvalidEvent. Each retry backs off exponentially, counted per kind."""

    def __init__(self, runner: BatchRunner, what: str, attempts: int) -> None:
        self.runner, self.what, self.attempts = runner, what, attempts
        self.failures = 0  # tries that failed on the event's own account
        self.outages = 0  # tries that failed because a server was unreachable
        self.outage_started: float | None = None
        self._in_outage = False

    def retrying(self) -> tenacity.AsyncRetrying:
        return tenacity.AsyncRetrying(retry=tenacity.retry_if_not_exception_type(InvalidEvent), after=self._count,
                                      wait=self._wait, stop=self._stop, before_sleep=self._announce,
                                      sleep=self._sleep, reraise=True)

    def raise_if_outage(self, error: BaseException) -> None:
        """After the tries ended on `error`: an outage ended them only by lasting too long."""
        if is_outage(error):
            elapsed = self.runner.clock() - (self.outage_started or 0.0)
            raise OutageTooLong(f"{self.what}: still failing after {elapsed:.0f}s") from error

    def _count(self, state: tenacity.RetryCallState) -> None:
        error = _error(state)
        self._in_outage = error is not None and is_outage(error)
        if self._in_outage:
            self.outages += 1
            if self.outage_started is None:
                self.outage_started = self.runner.clock()
        else:
            self.failures += 1

    def _wait(self, state: tenacity.RetryCallState) -> float:
        return self.runner.policy.delay(self.outages if self._in_outage else self.failures)

    def _stop(self, state: tenacity.RetryCallState) -> bool:
        if not self._in_outage:
            return self.failures >= self.attempts
        timeout = self.runner.policy.outage_timeout
        return bool(timeout) and self.runner.clock() - (self.outage_started or 0.0) >= timeout

    def _announce(self, state: tenacity.RetryCallState) -> None:
        error, metrics = _error(state), self.runner.metrics
        if self._in_outage:
            metrics.event_retries.labels("outage", type(error).__name__).inc()
            log.warning("%s waits for an outage (%s: %s); retry %d in %.1fs", self.what, type(error).__name__,
                        error, self.outages, state.upcoming_sleep)
        else:
            metrics.event_retries.labels("event", type(error).__name__).inc()
            log.warning("%s failed (%s: %s), try %d of %d", self.what, type(error).__name__, error,
                        self.failures + 1, self.attempts)

    async def _sleep(self, seconds: float) -> None:
        if not self._in_outage:
            await self.runner.sleep(seconds)
            return
        self.runner.metrics.outage_waits.inc()
        try:
            await self.runner.sleep(seconds)
        finally:
            self.runner.metrics.outage_waits.dec()


def _error(state: tenacity.RetryCallState) -> BaseException | None:
    return state.outcome.exception() if state.outcome else None
