"""Feeds stay right as the graph changes, end to end on the real stack: follow backfill, unfollow,
delete, celebrity threshold crossing both ways, inactive followers and regeneration, and follow/unfollow
events in any order. Each test builds its own small scene with ids of its own, publishes events through
Kafka to the real worker, and checks the feeds read over HTTP against what the events say.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Iterator

import pytest
from live import Deployment, deploy

from fanout.core.events import Event, Followed, PostCreated, PostDeleted, Unfollowed, UserSeen
from fanout.core.ids import EPOCH_MS, TIME_SHIFT, millis_of
from fanout.settings import Settings

pytestmark = pytest.mark.e2e

THRESHOLD = 10  # celebrity at 10 followers, demoted below 8
BACKFILL = 5
DAY_MS = 86_400_000
_ids = itertools.count(1_000)


def new_ids(n: int) -> list[int]:
    return [next(_ids) for _ in range(n)]


class Clock:
    """Event times for a scene: strictly increasing, starting `days_ago` days before now."""

    def __init__(self, days_ago: float = 0) -> None:
        self.t = time.time_ns() // 1_000_000 - int(days_ago * DAY_MS)
        self.seq = 0

    def tick(self) -> int:
        self.t += 1
        return self.t

    def post(self, author: int, body: str = "") -> PostCreated:
        t = self.tick()
        self.seq += 1
        post_id = ((t - EPOCH_MS) << TIME_SHIFT) | (1023 << 12) | (self.seq & 0xFFF)
        return PostCreated(event_time=millis_of(post_id), post_id=post_id, author_id=author,
                           body=body or f"post {self.seq} by {author}")

    def follow(self, follower: int, author: int) -> Followed:
        return Followed(event_time=self.tick(), follower_id=follower, followee_id=author)

    def unfollow(self, follower: int, author: int) -> Unfollowed:
        return Unfollowed(event_time=self.tick(), follower_id=follower, followee_id=author)


def newest_first(posts: list[PostCreated]) -> list[int]:
    return sorted((p.post_id for p in posts), reverse=True)


@pytest.fixture(scope="module")
def live(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with deploy(stack, tmp_path_factory.mktemp("logs"), "graph", celebrity_threshold=THRESHOLD,
                follow_backfill=BACKFILL, chunk_size=4) as d:
        yield d


def test_follow_backfills_the_latest_posts_of_a_normal_author(live: Deployment) -> None:
    clock = Clock()
    author, reader = new_ids(2)
    posts = [clock.post(author) for _ in range(BACKFILL + 3)]
    live.publish(posts)
    live.drain()
    live.publish([clock.follow(reader, author)])
    live.drain()
    assert live.feed(reader) == newest_first(posts)[:BACKFILL]
    later = clock.post(author)
    live.publish([later])
    live.drain()
    assert live.feed(reader) == [later.post_id, *newest_first(posts)[:BACKFILL]]


def test_following_a_celebrity_merges_its_timeline_at_read(live: Deployment) -> None:
    clock = Clock()
    celebrity, reader, *fans = new_ids(2 + THRESHOLD)
    live.publish([clock.follow(f, celebrity) for f in fans])
    posts = [clock.post(celebrity) for _ in range(BACKFILL + 3)]
    live.publish(posts)
    live.drain()
    live.publish([clock.follow(reader, celebrity)])
    live.drain()
    assert live.feed(reader) == newest_first(posts)  # all of them: pulled, not copied
    assert not live.inbox(reader)


def test_unfollow_hides_at_once_and_purges_the_inbox_in_the_background(live: Deployment) -> None:
    clock = Clock()
    author, other, reader = new_ids(3)
    live.publish([clock.follow(reader, author), clock.follow(reader, other)])
    kept = [clock.post(other) for _ in range(2)]
    gone = [clock.post(author) for _ in range(3)]
    live.publish([*kept, *gone])
    live.drain()
    assert live.feed(reader) == newest_first(kept + gone)
    purged_before = live.worker_metric("fanout_purged_rows_total")
    live.publish([clock.unfollow(reader, author)])
    live.drain()
    assert live.feed(reader) == newest_first(kept)
    rows = live.inbox(reader, "author_id")
    assert sorted(r.author_id for r in rows) == [other, other]  # purged: only the kept author's rows
    assert live.worker_metric("fanout_purged_rows_total") - purged_before == len(gone)
    # Following again brings the author's posts back (backfill), as if never unfollowed.
    live.publish([clock.follow(reader, author)])
    live.drain()
    assert live.feed(reader) == newest_first(kept + gone)


def test_a_deleted_post_appears_in_no_feed_pushed_or_pulled(live: Deployment) -> None:
    clock = Clock()
    author, celebrity, fan, *readers = new_ids(3 + THRESHOLD - 1)
    # 9 readers follow both: the author stays normal; one more fan makes the other a celebrity.
    live.publish([clock.follow(r, a) for r in readers for a in (author, celebrity)] + [clock.follow(fan, celebrity)])
    posts = [clock.post(author), clock.post(celebrity), clock.post(author), clock.post(celebrity)]
    live.publish(posts)
    live.drain()
    assert all(live.feed(r) == newest_first(posts) for r in readers)
    deleted = [posts[0], posts[1]]  # one pushed, one pulled
    live.publish([PostDeleted(event_time=clock.tick(), post_id=p.post_id, author_id=p.author_id) for p in deleted])
    live.drain()
    assert all(live.feed(r) == newest_first(posts[2:]) for r in readers)


def test_threshold_crossing_both_ways_keeps_every_post_exactly_once(live: Deployment) -> None:
    clock = Clock()
    author, *fans = new_ids(1 + THRESHOLD + 2)
    first, rest = fans[: THRESHOLD - 1], fans[THRESHOLD - 1 :]
    switches = {d: live.worker_metric(f'fanout_tier_switches_total{{direction="{d}"}}') for d in ("to_pull", "to_push")}
    events: list[Event] = [clock.follow(f, author) for f in first]
    before = [clock.post(author) for _ in range(2)]  # pushed: 9 followers
    # Posts in flight around the switch: published in one batch with the follows that cross the threshold.
    crossing = [clock.follow(rest[0], author), clock.post(author), clock.follow(rest[1], author), clock.post(author)]
    events += [*before, *crossing]
    live.publish(events)
    live.drain()
    celebrity_posts = [e for e in crossing if isinstance(e, PostCreated)]
    assert live.cql("SELECT is_celebrity FROM followers_by_author WHERE author_id = %s LIMIT 1", author)[0].is_celebrity
    followers = first + rest[:2]
    all_posts = before + celebrity_posts
    for f in followers:  # pushed before the switch, pulled after it: each exactly once
        assert live.feed(f) == newest_first(all_posts), f
    assert all(live.celebrities(f) == [author] for f in followers)
    # Down again: 11 followers -> 7 (< 0.8 * 10) demotes; posts after that are pushed again.
    leaving = followers[:4]
    live.publish([clock.unfollow(f, author) for f in leaving])
    after = [clock.post(author) for _ in range(2)]
    live.publish(after)
    live.drain()
    assert not live.cql("SELECT is_celebrity FROM followers_by_author WHERE author_id = %s LIMIT 1",
                        author)[0].is_celebrity
    for f in followers[4:]:  # the pulled posts were backfilled into inboxes before the sets changed
        assert live.feed(f) == newest_first(all_posts + after), f
        assert not live.celebrities(f)
    for f in leaving:
        assert live.feed(f) == []
    assert live.worker_metric('fanout_tier_switches_total{direction="to_pull"}') == switches["to_pull"] + 1
    assert live.worker_metric('fanout_tier_switches_total{direction="to_push"}') == switches["to_push"] + 1


def test_inactive_followers_get_no_pushes_and_a_returning_user_is_regenerated(live: Deployment) -> None:
    clock = Clock(days_ago=10)
    authors = new_ids(3)
    active, away = new_ids(2)
    follows = [clock.follow(u, a) for u in (active, away) for a in authors]
    # Both were seen 10 days ago; `active` reads again now (the read service records it).
    seen = [UserSeen(event_time=clock.tick(), user_id=u) for u in (active, away)]
    live.publish([*follows, *seen])
    live.drain()
    finished = live.worker_metric('fanout_regenerations_total{phase="finished"}')
    live.read(active)  # back after 10 days too: regenerated (nothing to copy yet), pushed to from now on
    live.wait_metric('fanout_regenerations_total{phase="finished"}', finished + 1)
    skipped_before = live.worker_metric("fanout_inactive_followers_skipped_total")
    now = Clock()
    posts = [now.post(a) for a in authors for _ in range(2)]
    live.publish(posts)
    live.drain()
    assert len(live.inbox(active)) == len(posts)
    assert not live.inbox(away)
    assert live.worker_metric("fanout_inactive_followers_skipped_total") - skipped_before == len(posts)

    started = live.worker_metric('fanout_regenerations_total{phase="finished"}')
    first = live.read(away, limit=20)  # answered at once by a read-time pull
    assert first["regenerating"] is True
    assert [i["post_id"] for i in first["items"]] == newest_first(posts)
    live.wait_metric('fanout_regenerations_total{phase="finished"}', started + 1)
    rebuilt = live.read(away, limit=20)
    assert rebuilt["regenerating"] is False
    assert [i["post_id"] for i in rebuilt["items"]] == newest_first(posts)
    assert len(live.inbox(away)) == len(posts)
    later = now.post(authors[0])  # and pushes reach the returning user again
    live.publish([later])
    live.drain()
    assert live.feed(away)[0] == later.post_id


def test_a_read_by_a_reader_following_more_than_a_chunk_marks_every_edge_seen_in_chunk_tasks(
        live: Deployment) -> None:
    """Nine followees and FANOUT_CHUNK_SIZE 4: the read's UserSeen sends three SeenChunk tasks through the
    chunks topic instead of writing the nine edges itself; every edge then carries the read's time."""
    clock = Clock(days_ago=3)  # seen 3 days ago: active, but the edges are due for a refresh
    authors = new_ids(9)
    (reader,) = new_ids(1)
    live.publish([*(clock.follow(reader, a) for a in authors), UserSeen(event_time=clock.tick(), user_id=reader)])
    live.drain()
    chunks = live.worker_metric('fanout_events_consumed_total{type="SeenChunk"}')
    now = Clock().tick()
    live.publish([UserSeen(event_time=now, user_id=reader)])
    live.wait_metric('fanout_events_consumed_total{type="SeenChunk"}', chunks + 3)
    edges = {r.author_id: r.last_seen for a in authors for r in live.cql(
        "SELECT author_id, last_seen FROM followers_by_author WHERE author_id = %s AND follower_id = %s", a, reader)}
    assert edges == dict.fromkeys(authors, now)
    assert live.worker_metric('fanout_events_consumed_total{type="SeenChunk"}') == chunks + 3


def test_follow_and_unfollow_in_any_order_with_duplicates_converge_to_the_latest(live: Deployment) -> None:
    clock = Clock()
    rng = random.Random(3)
    author, *users = new_ids(1 + 12)
    history: list[Event] = []
    latest: dict[int, Event] = {}
    for u in users:
        for _ in range(rng.randint(1, 5)):
            e: Event = clock.follow(u, author) if rng.random() < 0.5 else clock.unfollow(u, author)
            history.append(e)
            latest[u] = e
    post = clock.post(author)
    arrival = history + rng.sample(history, len(history) // 2)  # duplicates
    rng.shuffle(arrival)
    live.publish(arrival)
    live.drain()
    live.publish([post])
    live.drain()
    following = {u for u, e in latest.items() if isinstance(e, Followed)}
    count = live.cql("SELECT follower_count FROM followers_by_author WHERE author_id = %s LIMIT 1", author)
    assert (count[0].follower_count if count else 0) == len(following)
    for u in users:
        assert live.feed(u) == ([post.post_id] if u in following else []), u


def test_metrics_of_graph_changes_are_exported(live: Deployment) -> None:
    for name in ("fanout_backfilled_rows_total", "fanout_purged_rows_total", "fanout_deletes_applied_total",
                 "fanout_tier_switches_total", "fanout_inactive_followers_skipped_total",
                 'fanout_regenerations_total{phase="started"}', 'fanout_regenerations_total{phase="finished"}'):
        assert live.worker_metric(name) > 0, name


def test_the_worker_times_its_garbage_collections(live: Deployment) -> None:
    # services/worker.py tunes and times them as the read service does (fanout/metrics.py tune_gc).
    assert live.worker_metric('fanout_gc_pause_seconds_count{generation="0"}') > 0


def test_a_delete_claimed_by_another_author_changes_nothing(live: Deployment) -> None:
    clock = Clock()
    author, impostor, reader = new_ids(3)
    live.publish([clock.follow(reader, author)])
    post = clock.post(author)
    live.publish([post, PostDeleted(event_time=clock.tick(), post_id=post.post_id, author_id=impostor)])
    live.drain()
    assert live.feed(reader) == [post.post_id]
    live.publish([PostDeleted(event_time=clock.tick(), post_id=post.post_id, author_id=author)])
    live.drain()
    assert live.feed(reader) == []
