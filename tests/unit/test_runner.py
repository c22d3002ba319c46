"""The worker's batch runner (streams/runner.py): no servers, no Faust."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import NoReturn

import pytest

from fanout.events import Event, InvalidEvent, PostCreated, PostDeleted, decode_author_event, encode
from fanout.metrics import Metrics, sample
from streams.runner import BatchRunner


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


def records(*events: Event | bytes) -> list[Rec]:
    out = []
    for offset, e in enumerate(events):
        if isinstance(e, bytes):
            out.append(Rec(b"1", e, Msg(0, offset)))
        else:
            out.append(Rec(e.key, encode(e), Msg(0, offset)))
    return out


class Harness:
    def __init__(self, fail_on: set[int] = frozenset(), slow: dict[int, float] | None = None) -> None:
        self.handled: list[int] = []
        self.dead: list[tuple[bytes | None, dict[str, bytes]]] = []
        self.stops: list[str] = []
        self.fail_on = fail_on
        self.slow = slow or {}
        self.metrics = Metrics()
        self.runner = BatchRunner("events", lambda v, k: decode_author_event(v, k, 1000), self.handle,
                                  self.dead_letter, self.metrics, stop=self.stop)

    async def handle(self, event: Event) -> None:
        assert isinstance(event, PostCreated | PostDeleted)
        await asyncio.sleep(self.slow.get(event.post_id, 0))
        if event.post_id in self.fail_on:
            raise RuntimeError(f"cannot write {event.post_id}")
        self.handled.append(event.post_id)

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


async def test_invalid_events_are_dead_lettered_with_the_reason_and_the_rest_goes_on() -> None:
    h = Harness()
    await h.runner.run(records(post(1, 7), b"{not json", post(2, 7)))
    assert h.handled == [1, 2]
    [(value, headers)] = h.dead
    assert value == b"{not json"
    assert headers["reason"] == b"bad_json" and headers["source_offset"] == b"1"
    assert headers["source_topic"] == b"events" and headers["source_partition"] == b"0"
    assert sample(h.metrics, "fanout_dead_lettered_events_total", {"reason": "bad_json"}) == 1


async def test_a_failing_handler_stops_the_worker_only_after_the_rest_of_the_batch_settled() -> None:
    h = Harness(fail_on={1}, slow={2: 0.05})
    with pytest.raises(Stopped, match="could not process an event"):
        await h.runner.run(records(post(1, 7), post(3, 7), post(2, 8)))
    assert h.handled == [2]  # author 8 finished; author 7's later event never ran after the failure
    assert len(h.stops) == 1


async def test_an_unreachable_dead_letter_topic_stops_the_worker() -> None:
    h = Harness()

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
