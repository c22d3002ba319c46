"""Reads at cache speed, still right, end to end on the real stack: a reader of 250 celebrities gets every
post (no truncation), a warm read of a feed's head costs no Cassandra request and a page below it one (the
read service's own metric), and new celebrity posts, pushed posts, follows, deletes and unfollows show
within the stated bound although the caches' TTLs are far longer (the worker's feed updates keep them
current)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from live import Deployment, deploy

from fanout.core.events import Event, Followed, PostCreated, PostDeleted, Unfollowed
from fanout.core.ids import PostIdGenerator, millis_of
from fanout.settings import Settings

pytestmark = pytest.mark.e2e

CELEBRITIES = 250
UPDATE_BOUND_S = 5.0  # what the tests accept; the README states "typically well under a second"
_post_ids = PostIdGenerator(node=1019)


def post(author: int) -> PostCreated:
    pid = _post_ids.next_id()
    return PostCreated(event_time=millis_of(pid), post_id=pid, author_id=author, body=f"by {author}")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@pytest.fixture(scope="module")
def live(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    # Every author with 2 followers is a celebrity. The caches' TTLs are a minute: anything that shows sooner
    # came through the worker's feed updates.
    with deploy(stack, tmp_path_factory.mktemp("logs"), "reads", celebrity_threshold=2, head_cache_ttl_ms=60_000,
                post_cache_ttl_s=60.0, reader_page_ttl_ms=60_000) as d:
        yield d


def visible_within(live: Deployment, reader: int, post_id: int, shown: bool) -> float:
    """Seconds until the post is (or is no longer) on the reader's first page; fails past the bound."""
    started = time.monotonic()
    while time.monotonic() - started < UPDATE_BOUND_S:
        ids = [item["post_id"] for item in live.read(reader, limit=100)["items"]]
        if (post_id in ids) is shown:
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"post {post_id} still {'missing' if shown else 'shown'} after {UPDATE_BOUND_S}s")


def request_histogram(live: Deployment) -> tuple[float, float]:
    """count and sum of the Cassandra requests of each read, from the read service's /metrics."""
    samples = live.processes.scrape("read-api")
    return samples["fanout_read_cassandra_requests_count"], samples["fanout_read_cassandra_requests_sum"]


def test_a_reader_of_250_celebrities_gets_every_celebritys_posts(live: Deployment) -> None:
    reader, other = 2_000_001, 2_000_002
    authors = list(range(2_100_000, 2_100_000 + CELEBRITIES))
    t = now_ms() - 60_000
    follows: list[Event] = []
    for n, author in enumerate(authors):
        follows += [Followed(event_time=t + n, follower_id=reader, followee_id=author),
                    Followed(event_time=t + n, follower_id=other, followee_id=author)]
    live.publish(follows)
    live.drain()
    posts = [post(a) for a in authors]
    live.publish(posts)
    live.drain()
    assert live.feed(reader, page=40) == sorted((p.post_id for p in posts), reverse=True)
    assert live.worker_metric('fanout_posts_total{tier="pull"}') == CELEBRITIES


def test_a_warm_read_costs_no_cassandra_request_at_the_head_and_one_below_it(live: Deployment) -> None:
    reader = 2_000_001  # follows 250 celebrities (the test above)
    head = live.read(reader, limit=20)  # warm: the reader's page, the celebrities' heads, the posts are cached
    live.read(reader, limit=20, cursor=head["next_cursor"])
    count, total = request_histogram(live)
    reads = 50
    for _ in range(reads):
        assert live.read(reader, limit=20) == head
    count2, total2 = request_histogram(live)
    assert count2 - count == reads
    assert total2 - total == 0, f"{total2 - total} requests for {reads} warm reads of the head"
    # Below a cursor: the reader's inbox page there, the rest from the caches. This reader's inbox is empty
    # (celebrities only), so the page carries no row and their state is a second request.
    for _ in range(reads):
        assert len(live.read(reader, limit=20, cursor=head["next_cursor"])["items"]) == 20
    count3, total3 = request_histogram(live)
    assert count3 - count2 == reads
    assert total3 - total2 == 2 * reads, f"{total3 - total2} requests for {reads} warm reads below the head"


def test_new_posts_deletes_and_unfollows_show_within_the_bound(live: Deployment) -> None:
    reader, fan, celeb, normal = 2_000_101, 2_000_102, 2_000_103, 2_000_104
    t = now_ms() - 10_000
    live.publish([Followed(event_time=t, follower_id=reader, followee_id=celeb),
                  Followed(event_time=t, follower_id=fan, followee_id=celeb),
                  Followed(event_time=t, follower_id=reader, followee_id=normal)])
    live.drain()
    old, pushed = post(celeb), post(normal)
    live.publish([old, pushed])
    live.drain()
    assert {old.post_id, pushed.post_id} <= {i["post_id"] for i in live.read(reader, limit=100)["items"]}
    fresh = post(celeb)  # the celebrity's head is cached now, for a minute
    live.publish([fresh])
    live.drain()
    visible_within(live, reader, fresh.post_id, shown=True)
    live.publish([PostDeleted(event_time=now_ms(), post_id=old.post_id, author_id=celeb)])
    live.drain()
    visible_within(live, reader, old.post_id, shown=False)
    live.publish([Unfollowed(event_time=now_ms(), follower_id=reader, followee_id=normal)])
    live.drain()
    visible_within(live, reader, pushed.post_id, shown=False)


def test_pushed_posts_and_follows_reach_a_cached_first_page(live: Deployment) -> None:
    reader, followed, later = 2_000_301, 2_000_302, 2_000_303  # one follower each: normal authors, pushed
    live.publish([Followed(event_time=now_ms() - 10_000, follower_id=reader, followee_id=followed)])
    live.drain()
    first = post(followed)
    live.publish([first])
    live.drain()
    visible_within(live, reader, first.post_id, shown=True)  # the reader's page is cached now, for a minute
    pushed, earlier = post(followed), post(later)
    live.publish([pushed, earlier])
    live.drain()
    visible_within(live, reader, pushed.post_id, shown=True)  # the delivery update put it on the cached head
    assert earlier.post_id not in [item["post_id"] for item in live.read(reader, limit=100)["items"]]
    live.publish([Followed(event_time=now_ms(), follower_id=reader, followee_id=later)])
    live.drain()
    visible_within(live, reader, earlier.post_id, shown=True)  # backfilled; the follow update dropped the page


def test_a_tier_switch_reaches_a_cached_first_page(live: Deployment) -> None:
    reader, fan, author = 2_000_401, 2_000_402, 2_000_403
    live.publish([Followed(event_time=now_ms() - 10_000, follower_id=reader, followee_id=author)])
    live.drain()
    pushed = post(author)  # one follower: a normal author, pushed
    live.publish([pushed])
    live.drain()
    visible_within(live, reader, pushed.post_id, shown=True)  # the reader's page is cached now, for a minute
    live.publish([Followed(event_time=now_ms(), follower_id=fan, followee_id=author)])  # two: a celebrity
    live.drain()
    pulled = post(author)  # on the author's timeline only: the reader's celebrity set must have it
    live.publish([pulled])
    live.drain()
    visible_within(live, reader, pulled.post_id, shown=True)
    assert live.read(reader, limit=100)["items"][0] == {
        "post_id": pulled.post_id, "author_id": author, "created_at": millis_of(pulled.post_id),
        "body": pulled.body, "via": "timeline"}


def test_an_impostors_delete_update_leaves_the_cached_post_shown(live: Deployment) -> None:
    reader, fan, celeb, impostor = 2_000_201, 2_000_202, 2_000_203, 2_000_204
    t = now_ms() - 10_000
    live.publish([Followed(event_time=t, follower_id=reader, followee_id=celeb),
                  Followed(event_time=t, follower_id=fan, followee_id=celeb)])
    live.drain()
    kept = post(celeb)
    live.publish([kept])
    live.drain()
    visible_within(live, reader, kept.post_id, shown=True)
    live.publish([PostDeleted(event_time=now_ms(), post_id=kept.post_id, author_id=impostor)])
    live.drain()
    time.sleep(0.5)
    assert kept.post_id in [item["post_id"] for item in live.read(reader, limit=100)["items"]]
