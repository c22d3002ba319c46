"""The worker's batch runner (fanout/write/runner.py): no servers, no Faust."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import NoReturn

import pytest
from cassandra import InvalidRequest, WriteTimeout
from cassandra.cluster import NoHostAvailable

from fanout.adapters.failures import is_outage
from fanout.core.codec import decode_author_event, encode
from fanout.core.events import Event, InvalidEvent, PostCreated, PostDeleted
from fanout.metrics import Metrics, sample
from fanout.write.runner import BatchRunner, InFlight, RetryPolicy


@dataclass
class Msg:
    partition: int
    offset: int


@dataclass
class Rec:
    key: bytes | None
    value: bytes | None
    message: Msg


class Stopped(Exception):
    pass


def records(*events: Event | bytes, first: int = 0) -> list[Rec]:
    out = []
    for offset, e in enumerate(events, first):
        if isinstance(e, bytes):
            out.append(Rec(b"1", e, Msg(0, offset)))
        else:
            out.append(Rec(e.key, encode(e), Msg(0, offset)))
    return out


class Harness:
    """A runner on fakes. `fail_on` maps a post id to the errors its handler raises, one per try (the last
    one again and again); time is virtual: `sleep` advances the clock and records the delay."""

    def __init__(self, fail_on: dict[int, list[Exception]] | None = None, slow: dict[int, float] | None = None,
                 policy: RetryPolicy | None = None) -> None:
        self.handled: list[int] = []
        self.tries: dict[int, int] = {}
        self.dead: list[tuple[bytes | None, dict[str, bytes]]] = []
        self.stops: list[str] = []
        self.sleeps: list[float] = []
        self.now = 0.0
        self.fail_on = fail_on or {}
        self.slow = slow or {}
        self.metrics = Metrics()
        self.runner = BatchRunner("events", lambda v, k: decode_author_event(v, k, 1000), self.handle,
                                  self.dead_letter, self.metrics, policy or RetryPolicy(), stop=self.stop,
                                  sleep=self.sleep, clock=lambda: self.now)

    async def handle(self, event: Event) -> None:
        assert isinstance(event, PostCreated | PostDeleted)
        await asyncio.sleep(self.slow.get(event.post_id, 0))
        n = self.tries[event.post_id] = self.tries.get(event.post_id, 0) + 1
        errors = self.fail_on.get(event.post_id, [])
        if errors and (n <= len(errors) or errors[-1] is not None):
            error = errors[min(n, len(errors)) - 1]
            if error is not None:
                raise error
        self.handled.append(event.post_id)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def dead_letter(self, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> None:
        self.dead.append((value, dict(headers)))

    def stop(self, reason: str) -> NoReturn:
        self.stops.append(reason)
        raise Stopped(reason)


def post(pid: int, author: int) -> PostCreated:
    return PostCreated(event_time=1, post_id=pid, author_id=author, body="x")


async def test_one_authors_events_run_in_order_and_authors_run_concurrently() -> None:
    h = Harness(slow={1: 0.05})  # author 7's first event is slow: its second waits, author 8's does not
    await h.runner.run(records(post(1, 7), post(2, 8), post(3, 7)))
    assert h.handled == [2, 1, 3]


async def test_a_finished_batch_stamps_the_time_it_finished() -> None:
    h = Harness(slow={1: 0.05})

    def stamp() -> float | None:
        return h.metrics.registry.get_sample_value("fanout_last_batch_timestamp_seconds", {"source": "events"})

    assert stamp() is None
    before = time.time()
    await h.runner.run(records(post(1, 7), post(2, 8)))
    stamped = stamp()
    assert stamped is not None and before + 0.05 <= stamped <= time.time()


async def test_invalid_events_are_dead_lettered_with_the_reason_and_the_rest_goes_on() -> None:
    h = Harness()
    await h.runner.run(records(post(1, 7), b"{not json", post(2, 7)))
    assert h.handled == [1, 2]
    [(value, headers)] = h.dead
    assert value == b"{not json"
    assert headers["reason"] == b"bad_json" and headers["source_offset"] == b"1"
    assert headers["source_topic"] == b"events" and headers["source_partition"] == b"0"
    assert sample(h.metrics, "fanout_dead_lettered_events_total", {"reason": "bad_json"}) == 1


async def test_an_event_that_keeps_failing_is_parked_with_its_reason_and_its_partition_moves_on() -> None:
    h = Harness(fail_on={1: [KeyError("no such follower page")]}, policy=RetryPolicy(attempts=3, base_delay=0.5))
    await h.runner.run(records(post(1, 7), post(3, 7), post(2, 8)))
    assert h.tries[1] == 3 and h.sleeps == [0.5, 1.0]  # bounded retries with doubling backoff
    assert sorted(h.handled) == [2, 3]  # author 7's next event ran after the parked one
    [(value, headers)] = h.dead
    assert value == encode(post(1, 7))
    assert headers["reason"] == b"handler_error" and headers["error_class"] == b"KeyError"
    assert b"no such follower page" in headers["error"] and headers["attempts"] == b"3"
    assert (headers["source_topic"], headers["source_partition"], headers["source_offset"]) == (b"events", b"0", b"0")
    assert int(headers["dead_lettered_at"]) > 0
    assert sample(h.metrics, "fanout_parked_events_total", {"error": "KeyError"}) == 1
    assert sample(h.metrics, "fanout_event_retries_total", {"kind": "event", "error": "KeyError"}) == 2
    assert h.stops == []


async def test_an_event_its_handler_finds_invalid_is_dead_lettered_at_once_with_the_reason() -> None:
    h = Harness(fail_on={1: [InvalidEvent("post_id_taken", "post 1 is user 8's")]})
    await h.runner.run(records(post(1, 7), post(3, 7)))
    assert h.tries[1] == 1 and h.sleeps == [] and h.handled == [3]  # no retry: it would fail the same way
    [(value, headers)] = h.dead
    assert value == encode(post(1, 7)) and headers["reason"] == b"post_id_taken" and b"user 8" in headers["error"]
    assert sample(h.metrics, "fanout_dead_lettered_events_total", {"reason": "post_id_taken"}) == 1


async def test_an_event_that_fails_once_is_retried_and_not_parked() -> None:
    h = Harness(fail_on={1: [ValueError("flaky"), None]})
    await h.runner.run(records(post(1, 7), post(3, 7)))
    assert h.handled == [1, 3] and h.dead == [] and h.tries[1] == 2


async def test_an_outage_is_waited_out_in_order_however_long_and_nothing_is_parked() -> None:
    outage: list[Exception] = [NoHostAvailable("down", {}), WriteTimeout("slow", write_type=0),
                               ConnectionRefusedError()] * 10
    h = Harness(fail_on={1: [*outage, None]}, policy=RetryPolicy(attempts=2, base_delay=0.5, outage_max_delay=15,
                                                                  outage_timeout=900))
    await h.runner.run(records(post(1, 7), post(3, 7)))
    assert h.handled == [1, 3] and h.dead == [] and h.stops == []
    assert h.tries[1] == 31  # far more than `attempts`: an outage is not the event's fault
    assert max(h.sleeps) == 15 and h.sleeps[:3] == [0.5, 1.0, 2.0]
    assert sample(h.metrics, "fanout_event_retries_total", {"kind": "outage", "error": "NoHostAvailable"}) == 10
    assert sample(h.metrics, "fanout_outage_waits") == 0


async def test_an_outage_longer_than_the_timeout_stops_the_worker_unacknowledged() -> None:
    h = Harness(fail_on={1: [NoHostAvailable("down", {})]}, slow={2: 0.01},
                policy=RetryPolicy(outage_max_delay=10, outage_timeout=60))
    with pytest.raises(Stopped, match="could not process an event"):
        await h.runner.run(records(post(1, 7), post(3, 7), post(2, 8)))
    assert h.handled == [2]  # author 8 finished; author 7's later event never ran
    assert h.dead == [] and 60 <= h.now < 75
    assert len(h.stops) == 1


async def test_a_missing_keyspace_is_an_outage_and_a_rejected_statement_is_the_events_fault() -> None:
    h = Harness(fail_on={1: [InvalidRequest("Keyspace fanout does not exist")] * 5 + [None],
                         2: [InvalidRequest("Batch too large")]})
    await h.runner.run(records(post(1, 7), post(2, 8)))
    assert h.handled == [1]
    assert [headers["error_class"] for _, headers in h.dead] == [b"InvalidRequest"]


def test_outages_are_told_from_event_errors_through_explicit_causes() -> None:
    try:
        try:
            raise NoHostAvailable("down", {})
        except NoHostAvailable as cause:
            raise RuntimeError("fan-out failed") from cause
    except RuntimeError as wrapped:
        assert is_outage(wrapped)
    assert is_outage(TimeoutError()) and is_outage(OSError("connection reset"))
    assert not is_outage(ValueError("bad")) and not is_outage(InvalidRequest("Batch too large"))


async def test_a_kafka_outage_while_parking_is_waited_out() -> None:
    h = Harness(fail_on={1: [KeyError("x")]}, policy=RetryPolicy(attempts=1))
    fails = [ConnectionError("no broker")] * 3
    sent: list[dict[str, bytes]] = []

    async def flaky(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> None:
        if fails:
            raise fails.pop()
        sent.append(dict(headers))

    h.runner.send_dead_letter = flaky
    await h.runner.run(records(post(1, 7), post(3, 7)))
    assert [s["reason"] for s in sent] == [b"handler_error"] and h.handled == [3]


async def test_an_unreachable_dead_letter_topic_stops_the_worker_after_the_outage_timeout() -> None:
    h = Harness(policy=RetryPolicy(outage_timeout=30))

    async def unreachable(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> None:
        raise ConnectionError("no broker")

    h.runner.send_dead_letter = unreachable
    with pytest.raises(Stopped, match="could not finish a batch"):
        await h.runner.run(records(b"garbage"))
    assert h.dead == [] and h.handled == []


def test_decode_errors_name_their_reason() -> None:
    with pytest.raises(InvalidEvent) as info:
        decode_author_event(encode(post(1, 7)), b"8", 1000)
    assert info.value.reason == "wrong_key"


class Acks:
    """What InFlight acknowledged, with the events handled at the moment of each acknowledgement."""

    def __init__(self, h: Harness) -> None:
        self.h = h
        self.acked: list[int] = []
        self.handled_then: list[list[int]] = []

    async def ack(self, record: Rec) -> None:
        self.acked.append(record.message.offset)
        self.handled_then.append(list(self.h.handled))


async def test_batches_in_flight_overlap_keep_each_authors_order_and_are_acknowledged_in_the_order_taken() -> None:
    h = Harness(slow={1: 0.05, 4: 0.01})
    acks = Acks(h)
    batches = InFlight(h.runner, acks.ack, depth=3)
    await batches.submit(records(post(1, 7), post(2, 8)))  # author 7's first post is slow
    await batches.submit(records(post(3, 7), post(4, 9), first=2))
    assert acks.acked == []  # submit returned at once: two batches are in flight
    await batches.drain()
    # author 9 of the second batch ran while the first batch was still out; author 7's post 3 waited for post 1
    assert h.handled == [2, 4, 1, 3]
    assert acks.acked == [0, 1, 2, 3]
    assert sorted(acks.handled_then[0]) == [1, 2, 4]  # the first batch was acknowledged once it was done...
    assert acks.handled_then[2] == [2, 4, 1, 3]  # ...and the second, though its author 9 finished first, after it


async def test_one_batch_in_flight_runs_batches_one_after_the_other() -> None:
    h = Harness(slow={1: 0.02})
    acks = Acks(h)
    batches = InFlight(h.runner, acks.ack, depth=1)
    await batches.submit(records(post(1, 7), post(2, 8)))
    assert sorted(h.handled) == [1, 2] and acks.acked == [0, 1]  # done and acknowledged before submit returned
    await batches.submit(records(post(3, 9), first=2))
    assert h.handled[-1] == 3 and acks.acked == [0, 1, 2]
    with pytest.raises(ValueError):
        InFlight(h.runner, acks.ack, depth=0)


async def test_a_failed_batch_is_not_acknowledged_and_neither_is_any_batch_after_it() -> None:
    h = Harness(fail_on={1: [NoHostAvailable("down", {})]}, policy=RetryPolicy(outage_max_delay=10, outage_timeout=60))
    acks = Acks(h)
    batches = InFlight(h.runner, acks.ack, depth=3)
    await batches.submit(records(post(1, 7)))
    await batches.submit(records(post(2, 8), first=1))
    with pytest.raises(Stopped):
        await batches.drain()
    assert h.handled == [2]  # the later batch ran...
    assert acks.acked == []  # ...but nothing is acknowledged past the event that could not be written
    assert h.stops == ["could not process an event from events"]


async def test_abandoned_batches_acknowledge_nothing_more() -> None:
    h = Harness(slow={1: 0.05})
    acks = Acks(h)
    batches = InFlight(h.runner, acks.ack, depth=3)
    await batches.submit(records(post(1, 7)))
    await batches.submit(records(post(2, 8), first=1))
    await asyncio.sleep(0.01)
    batches.cancel()
    await asyncio.sleep(0.08)
    assert acks.acked == []
