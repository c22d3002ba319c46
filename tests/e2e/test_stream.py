"""Live feeds end to end: several readers connected to GET /v1/feed/stream receive exactly the new
items of their feeds (pushed and pulled), delete notices, follows made while connected, and a reconnect with
Last-Event-ID resumes without a gap or a duplicate. Checked against an oracle of each reader's feed; and
the updates the read service learns these from, read off Kafka with kcat."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest
from kafka_clients import kcat_args
from live import Deployment, deploy
from sse import Stream

from fanout.api.auth import mint_token
from fanout.core.codec import decode, decode_feed_updates
from fanout.core.events import Event, FeedUpdates, FollowChanged, Followed, PostCreated, PostDeleted
from fanout.core.ids import PostIdGenerator, millis_of
from fanout.settings import Settings
from fanout.write.update_sender import partition_of

pytestmark = pytest.mark.e2e
_ids = PostIdGenerator(node=1018)


def post(author: int) -> PostCreated:
    pid = _ids.next_id()
    return PostCreated(event_time=millis_of(pid), post_id=pid, author_id=author, body=f"live from {author}")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@pytest.fixture(scope="module")
def live(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    # No leeway on a token's expiry, and two streams per user, so the tests of those limits are short.
    with deploy(stack, tmp_path_factory.mktemp("logs"), "stream", celebrity_threshold=3, stream_heartbeat_s=1.0,
                stream_reorder_ms=50, jwt_leeway_seconds=0, stream_max_per_user=2) as d:
        yield d


def connect(live: Deployment, reader: int, last_event_id: str | None = None, timeout: float = 30.0) -> Stream:
    headers = {**live.tokens.headers(reader), **({"Last-Event-ID": last_event_id} if last_event_id else {})}
    return Stream(f"{live.processes.url('read-api')}/v1/feed/stream", headers).start(timeout)


def settle(streams: list[Stream], counts: list[int]) -> None:
    for stream, count in zip(streams, counts, strict=True):
        stream.wait_for(count)
    time.sleep(0.5)  # anything more would be an extra item


def test_connected_readers_receive_exactly_their_new_items(live: Deployment) -> None:
    a, b, c, d, normal, celeb, other, x = range(3_000_001, 3_000_009)
    t = now_ms() - 10_000
    follows: list[Event] = [Followed(event_time=t, follower_id=f, followee_id=normal) for f in (a, b)]
    follows += [Followed(event_time=t, follower_id=f, followee_id=celeb) for f in (a, c, x)]  # 3: a celebrity
    follows += [Followed(event_time=t, follower_id=c, followee_id=other)]
    live.publish(follows)
    live.drain()
    streams = {r: connect(live, r) for r in (a, b, c, d)}
    p1, p2, p3, p4 = post(normal), post(celeb), post(other), post(normal)
    live.publish([p1, p2, p3, p4])
    live.drain()
    settle([streams[a], streams[b], streams[c]], [3, 2, 2])
    assert streams[a].posts() == [p1.post_id, p2.post_id, p4.post_id]  # pushed and pulled, in id order
    assert streams[b].posts() == [p1.post_id, p4.post_id]
    assert streams[c].posts() == [p2.post_id, p3.post_id]
    assert streams[d].events == []  # follows nobody: nothing, and nothing was written for it
    vias = {e.data["post_id"]: e.data["via"] for e in streams[a].events}
    assert (vias[p1.post_id], vias[p2.post_id]) == ("inbox", "timeline")
    assert [e.id for e in streams[a].events] == [str(p) for p in streams[a].posts()]

    live.publish([PostDeleted(event_time=now_ms(), post_id=p1.post_id, author_id=normal)])
    live.drain()
    settle([streams[a], streams[b]], [4, 3])
    assert streams[a].deletes() == [p1.post_id] and streams[b].deletes() == [p1.post_id]
    assert streams[c].deletes() == []

    # Follows made while connected count at once: a pushed author and a celebrity.
    live.publish([Followed(event_time=now_ms(), follower_id=d, followee_id=normal),
                  Followed(event_time=now_ms(), follower_id=d, followee_id=celeb)])
    live.drain()
    p5, p6 = post(normal), post(celeb)
    live.publish([p5, p6])
    live.drain()
    settle([streams[d]], [2])
    assert streams[d].posts() == [p5.post_id, p6.post_id]
    for s in streams.values():
        s.stop()
        assert s.error is None or isinstance(s.error, Exception)


def test_a_reconnect_with_last_event_id_resumes_without_gap_or_duplicate(live: Deployment) -> None:
    reader, author = 3_000_101, 3_000_102
    live.publish([Followed(event_time=now_ms() - 1000, follower_id=reader, followee_id=author)])
    live.drain()
    first = connect(live, reader)
    before = [post(author) for _ in range(2)]
    live.publish(before)
    live.drain()
    settle([first], [2])
    last = first.last_id()
    first.stop()
    time.sleep(1.5)  # the heartbeat lets the reader thread see the stop and close the connection
    missed = [post(author) for _ in range(3)]  # while disconnected
    live.publish(missed)
    live.drain()
    again = connect(live, reader, last_event_id=last)
    after = post(author)
    live.publish([after])
    live.drain()
    settle([again], [4])
    assert again.posts() == [p.post_id for p in [*missed, after]]
    assert set(first.posts()).isdisjoint(again.posts())
    again.stop()


def test_a_stream_needs_the_readers_token(live: Deployment) -> None:
    import httpx

    url = live.processes.url("read-api") + "/v1/feed/stream"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer not.a.token"}).status_code == 401
    bad = httpx.get(url, headers={**live.tokens.headers(3_000_301), "Last-Event-ID": "the start"})
    assert bad.status_code == 422 and "last-event-id" in bad.json()["error"]


def test_a_stream_ends_when_its_token_expires(live: Deployment) -> None:
    """A stream opened with a 20 s token once kept sending heartbeats 90 s later."""
    reader = 3_000_401
    token = mint_token(live.settings, reader, ttl_seconds=3)
    started = time.monotonic()
    stream = Stream(f"{live.processes.url('read-api')}/v1/feed/stream", {"Authorization": f"Bearer {token}"})
    stream.start()
    stream.join(timeout=15)
    assert [e.event for e in stream.events] == ["reauth"], stream.events
    assert stream.error is None and time.monotonic() - started < 10


def test_a_user_holds_a_bounded_number_of_streams(live: Deployment) -> None:
    import httpx

    reader = 3_000_402
    streams = [connect(live, reader) for _ in range(2)]  # FANOUT_STREAM_MAX_PER_USER for this module
    refused = httpx.get(live.processes.url("read-api") + "/v1/feed/stream", headers=live.tokens.headers(reader))
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0, refused.text
    assert "live streams" in refused.json()["error"]
    streams[0].stop()
    deadline = time.monotonic() + 15
    while True:  # the server notices the closed stream at its next heartbeat (1 s here)
        try:
            streams.append(connect(live, reader, timeout=2))
            break
        except TimeoutError:
            assert time.monotonic() < deadline, "the closed stream's place was never freed"
    for stream in streams:
        stream.stop()


def test_the_page_and_its_assets_are_served(live: Deployment) -> None:
    import httpx

    url = live.processes.url("read-api")
    page = httpx.get(url + "/")
    assert page.status_code == 200 and "/static/feed.js" in page.text
    assert httpx.get(url + "/static/feed.js").headers["content-type"].startswith("text/javascript")
    assert httpx.get(url + "/static/nope.js").status_code == 404
    assert httpx.get(url + "/static/..%2Fread_api.py").status_code in (404, 422)


def test_updates_sent_together_reach_kafka_as_envelopes_on_their_authors_partitions(live: Deployment) -> None:
    """Read with kcat, an outside client: the follows of one batch of events come out of the worker as
    FeedUpdates envelopes (fanout/write/update_sender.py), every update once, each on its author's partition."""
    s = live.settings
    followers, authors = range(3_100_001, 3_100_011), range(3_100_101, 3_100_141)
    t = now_ms()
    follows = [Followed(event_time=t, follower_id=f, followee_id=a) for a in authors for f in followers]
    live.publish(follows)
    live.drain()
    kcat = subprocess.run(
        ["kcat", "-C", *kcat_args(s), "-t", s.updates_topic, "-e", "-o", "beginning", "-f", "%p %k %s\\n"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert kcat.returncode == 0, kcat.stderr
    seen: list[tuple[int, int, bool]] = []
    envelopes = 0
    for line in kcat.stdout.splitlines():
        partition, key, value = line.split(" ", 2)
        envelopes += isinstance(decode(value.encode()), FeedUpdates)
        for update in decode_feed_updates(value.encode()):
            assert partition_of(update.key, s.kafka_partitions) == int(partition)
            assert partition_of(key.encode(), s.kafka_partitions) == int(partition)
            if isinstance(update, FollowChanged) and update.followee_id in authors:
                seen.append((update.follower_id, update.followee_id, update.following))
    assert sorted(seen) == sorted((e.follower_id, e.followee_id, True) for e in follows)
    assert envelopes > 0
