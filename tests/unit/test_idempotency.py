"""Idempotency keys (fanout/write/idempotency.py) over the in-memory store: the decision table and the flow."""

from __future__ import annotations

import asyncio

import pytest

from fanout.adapters.memory_keys import MemoryKeys
from fanout.core.model import KeyRecord
from fanout.write.idempotency import KeyReused, Step, next_step, once, request_hash

NOW = 1_000_000


@pytest.mark.parametrize(("found", "step"), [
    (KeyRecord("other", b"e", 0, b"r"), Step.CONFLICT),
    (KeyRecord("h", b"e", 0, b"r"), Step.REPLAY),
    (KeyRecord("h", b"e", NOW + 1, b"r"), Step.REPLAY),  # answered: the lease no longer matters
    (KeyRecord("h", b"e", NOW + 1), Step.WAIT),
    (KeyRecord("h", b"e", NOW), Step.TAKE_OVER),
    (KeyRecord("h", b"e", 0), Step.TAKE_OVER),  # released after a failed publish
])
def test_next_step(found: KeyRecord, step: Step) -> None:
    assert next_step(found, "h", NOW) is step


def test_the_fingerprint_covers_endpoint_and_content_in_any_key_order() -> None:
    assert request_hash("posts", {"a": 1, "b": "x"}) == request_hash("posts", {"b": "x", "a": 1})
    assert request_hash("posts", {"a": 1}) != request_hash("follows", {"a": 1})
    assert request_hash("posts", {"a": 1}) != request_hash("posts", {"a": 2})


class Publisher:
    def __init__(self, delay: float = 0.0, fail: int = 0) -> None:
        self.events: list[bytes] = []
        self.delay, self.fail = delay, fail

    async def __call__(self, event: bytes) -> bytes:
        await asyncio.sleep(self.delay)
        if self.fail:
            self.fail -= 1
            raise ConnectionError("kafka down")
        self.events.append(event)
        return b"response to " + event


async def test_a_retry_gets_the_first_response_and_publishes_nothing() -> None:
    keys, publish = MemoryKeys(86_400), Publisher()
    first = await once(keys, 1, "k", "h", b"post 1", publish, lease_ms=5_000)
    again = await once(keys, 1, "k", "h", b"post 2", publish, lease_ms=5_000)  # a retry builds a new event
    assert first == (b"response to post 1", False)
    assert again == (b"response to post 1", True)
    assert publish.events == [b"post 1"]
    assert (await once(keys, 2, "k", "h", b"post 3", publish, lease_ms=5_000))[1] is False  # keys are per user


async def test_the_same_key_with_another_request_is_refused() -> None:
    keys, publish = MemoryKeys(86_400), Publisher()
    await once(keys, 1, "k", "h", b"post 1", publish, lease_ms=5_000)
    with pytest.raises(KeyReused):
        await once(keys, 1, "k", "other body", b"post 2", publish, lease_ms=5_000)


async def test_concurrent_requests_with_one_key_publish_once_and_answer_alike() -> None:
    keys, publish = MemoryKeys(86_400), Publisher(delay=0.05)
    answers = await asyncio.gather(*(once(keys, 1, "k", "h", f"post {n}".encode(), publish, lease_ms=5_000,
                                          poll_seconds=0.01) for n in range(5)))
    assert len(publish.events) == 1
    assert {body for body, _ in answers} == {b"response to " + publish.events[0]}
    assert sorted(replayed for _, replayed in answers) == [False, True, True, True, True]


async def test_a_failed_publish_releases_the_key_and_the_retry_publishes_the_same_event() -> None:
    keys, publish = MemoryKeys(86_400), Publisher(fail=1)
    with pytest.raises(ConnectionError):
        await once(keys, 1, "k", "h", b"post 1", publish, lease_ms=60_000)
    assert await asyncio.wait_for(once(keys, 1, "k", "h", b"post 2", publish, lease_ms=60_000), 1) == \
        (b"response to post 1", False)  # no wait for the lease: it was released
    assert publish.events == [b"post 1"]


async def test_a_lease_left_by_a_dead_request_is_taken_over_with_the_stored_event() -> None:
    keys, publish = MemoryKeys(86_400), Publisher()
    clock = [NOW]
    await keys.claim(1, "k", KeyRecord("h", b"post 1", NOW + 100))  # claimed, then the process died
    waiting = asyncio.create_task(once(keys, 1, "k", "h", b"post 2", publish, lease_ms=100,
                                       clock_ms=lambda: clock[0], poll_seconds=0.01))
    await asyncio.sleep(0.05)
    assert not waiting.done()  # the lease still runs: it waits
    clock[0] += 101
    assert await asyncio.wait_for(waiting, 1) == (b"response to post 1", False)
    assert publish.events == [b"post 1"]


async def test_an_expired_key_is_free_again() -> None:
    now = [0]
    keys, publish = MemoryKeys(10, now_us=lambda: now[0]), Publisher()
    await once(keys, 1, "k", "h", b"post 1", publish, lease_ms=5_000)
    now[0] += 10_000_001
    assert await once(keys, 1, "k", "h", b"post 2", publish, lease_ms=5_000) == (b"response to post 2", False)
