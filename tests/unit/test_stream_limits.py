"""What one reader can hold on a read process's live streams (fanout/read/stream.py): streams per user and per
process, a bounded queue per stream, and a stream that ends with its token. tests/e2e/test_stream.py runs
the same limits through the real read service."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson
import pytest

from fanout.api.http import EventStream
from fanout.core.events import NotificationChanged, PostRemoved
from fanout.metrics import Metrics
from fanout.read.stream import StreamHub, StreamLimits, TooManyStreams

AUTHOR = 9


def _hub(now: list[int], **limits: int) -> StreamHub:
    # Delete notices need no post bodies, so no post cache.
    return StreamHub(None, Metrics(), reorder_ms=0, heartbeat_s=0.05,  # type: ignore[arg-type]
                     clock_ms=lambda: now[0], limits=StreamLimits(**limits))


async def _frames(frames: AsyncIterator[bytes], limit: int = 50) -> list[bytes]:
    out = []
    async for frame in frames:
        out.append(frame)
        if len(out) >= limit:
            break
    return out


def _events(frames: list[bytes]) -> list[tuple[str, str]]:
    """(event, data) of every non-comment frame."""
    found = []
    for frame in frames:
        fields = dict(line.split(": ", 1) for line in frame.decode().strip().split("\n") if ": " in line
                      and not line.startswith(":"))
        if "event" in fields:
            found.append((fields["event"], fields["data"]))
    return found


def test_a_user_and_a_process_hold_a_bounded_number_of_streams() -> None:
    hub = _hub([0], per_user=2, connections=3)
    first = hub.connect(1, {AUTHOR}, expires_ms=10**12)
    hub.connect(1, {AUTHOR}, expires_ms=10**12)
    with pytest.raises(TooManyStreams, match="user 1 has 2"):
        hub.connect(1, {AUTHOR}, expires_ms=10**12)
    hub.connect(2, {AUTHOR}, expires_ms=10**12)
    with pytest.raises(TooManyStreams, match="serves 3"):
        hub.connect(3, {AUTHOR}, expires_ms=10**12)
    hub.disconnect(first)
    hub.disconnect(first)  # twice: counted once
    assert hub.connections == 2
    hub.connect(1, {AUTHOR}, expires_ms=10**12)  # room again


async def test_a_reader_that_falls_behind_is_dropped_with_a_resume_notice() -> None:
    hub = _hub([0], queue_items=3)
    slow, fine = hub.connect(1, {AUTHOR}, 10**12), hub.connect(2, {AUTHOR}, 10**12)
    fine_frames = hub.frames(fine, [])
    assert await anext(fine_frames) == b"retry: 2000\n\n"
    for post_id in range(1, 6):
        hub.apply(PostRemoved(event_time=0, post_id=post_id, author_id=AUTHOR))
        assert _events([await anext(fine_frames)]) == [("delete", f'{{"post_id":{post_id}}}')]  # keeps up
    assert slow.overflowed and slow.queue.qsize() == 3  # bounded: nothing queued past the limit
    assert hub.by_followee[AUTHOR] == {fine}  # no longer routed to
    events = _events(await _frames(hub.frames(slow, [])))
    assert [e for e, _ in events] == ["resume"]
    assert "Last-Event-ID" in orjson.loads(events[0][1])["error"]
    assert not fine.overflowed
    await fine_frames.aclose()


async def test_a_stream_ends_when_its_token_does() -> None:
    now = [1_000]
    hub = _hub(now)
    conn = hub.connect(1, {AUTHOR}, expires_ms=1_100)
    frames = hub.frames(conn, [])
    assert await anext(frames) == b"retry: 2000\n\n"
    hub.apply(PostRemoved(event_time=0, post_id=7, author_id=AUTHOR))
    assert _events([await anext(frames)]) == [("delete", '{"post_id":7}')]
    now[0] = 1_100
    rest = await asyncio.wait_for(_frames(frames), timeout=5)
    assert [e for e, _ in _events(rest)] == ["reauth"]


async def test_a_stream_whose_client_takes_nothing_ends_after_the_send_timeout() -> None:
    """A reader that stops reading fills its socket's buffers, and then every send waits: EventStream ends
    the response (the server closes the connection) and closes the frames, which disconnect from the hub."""
    closed = []

    async def frames() -> AsyncIterator[bytes]:
        try:
            while True:
                yield b": heartbeat\n\n"
        finally:
            closed.append(True)

    async def stalled_send(message: dict[str, object]) -> None:
        if message["type"] == "http.response.body":
            await asyncio.Event().wait()  # the client never drains

    await _serve(EventStream(frames(), send_timeout=0.1), stalled_send)
    assert closed == [True]


async def test_a_stream_whose_client_is_slow_but_takes_every_frame_is_not_ended() -> None:
    """Sends of 60 ms each, for longer than the 100 ms send timeout in all: only one send's wait counts."""
    sent = []

    async def frames() -> AsyncIterator[bytes]:
        for n in range(6):
            yield b"data: %d\n\n" % n

    async def slow_send(message: dict[str, object]) -> None:
        if message["type"] == "http.response.body":
            await asyncio.sleep(0.06)
            sent.append(message.get("body"))

    await _serve(EventStream(frames(), send_timeout=0.1), slow_send)
    assert sent[:6] == [b"data: %d\n\n" % n for n in range(6)]


async def _serve(response: EventStream, send: Callable[[dict[str, object]], Awaitable[None]]) -> None:
    """Run the response as the server would, for a client that sends nothing after its request."""
    async def receive() -> dict[str, object]:
        await asyncio.Event().wait()
        return {}

    scope = {"type": "http", "asgi": {"spec_version": "2.4"}}
    await asyncio.wait_for(response(scope, receive, send), timeout=5)  # type: ignore[arg-type]


async def test_a_notification_group_goes_to_its_owner_only_and_again_whenever_it_changes() -> None:
    now = [1_000]
    hub = _hub(now)
    owner, other = hub.connect(1, set(), 10**12), hub.connect(2, set(), 10**12)

    def changed(actors: int, latest: tuple[int, ...]) -> NotificationChanged:
        return NotificationChanged(event_time=900, owner=1, group_id=77, kind="like", target=500, actors=actors,
                                   latest=latest, first_at=800, updated_at=900)

    hub.apply(changed(1, (5,)))
    hub.apply(changed(2, (6, 5)))
    frames = await _frames(hub.frames(owner, []), limit=3)
    sent = [orjson.loads(data) for event, data in _events(frames) if event == "notification"]
    assert [(n["id"], n["actors"], n["latest"]) for n in sent] == [(77, 1, [5]), (77, 2, [6, 5])]
    assert sent[1]["text"] == "user 6 and user 5 liked your post 500"
    assert all(b"id: " not in f for f in frames)  # a notification never moves the feed's Last-Event-ID
    assert other.queue.empty()
