"""The notifier dies (kill -9) during a storm of likes and unlikes: every post's like count ends exact, every
group holds exactly the likers counted in it, and a replayed like is never a second one."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cassandra.cluster import Session
from rig import Outcome, rig

from fanout.adapters.cassandra import Cassandra
from fanout.adapters.cassandra.notifications import CassandraNotifications
from fanout.core.clock import wall_ms
from fanout.core.events import Event, Liked, Unliked
from fanout.lag import consumer_lag
from fanout.metrics import Metrics
from fanout.settings import Settings

pytestmark = pytest.mark.faults

AUTHORS = range(70_000_001, 70_000_011)
POSTS_PER_AUTHOR = 5
USERS = range(71_000_001, 71_000_301)
WAVES = 3
EVENTS_PER_WAVE = 6_000


def test_kill_9_the_notifier_during_a_storm_of_likes_and_unlikes(stack_up: Settings, tmp_path: Path) -> None:
    rng = random.Random(27)
    posts = [(a, a * 100 + i) for a in AUTHORS for i in range(POSTS_PER_AUTHOR)]
    likers: dict[tuple[int, int], set[int]] = {p: set() for p in posts}
    with rig(stack_up, tmp_path / "logs", "likes", workers=1) as r:
        r.processes.start("notifier", timeout=180)
        lag_at_kill = []
        for _ in range(WAVES):
            events: list[Event] = []
            for _ in range(EVENTS_PER_WAVE):
                author, post = rng.choice(posts)
                user = rng.choice(USERS)
                if rng.random() < 0.7:
                    events.append(Liked(event_time=wall_ms(), user_id=user, post_id=post, author_id=author))
                    likers[(author, post)].add(user)
                else:
                    events.append(Unliked(event_time=wall_ms(), user_id=user, post_id=post, author_id=author))
                    likers[(author, post)].discard(user)
            r.publish(events)  # each post's events on its partition in this order: the oracle's order
            lag_at_kill.append(consumer_lag(r.settings, notifier=True))
            r.processes.kill("notifier")
            r.processes.start("notifier", timeout=180)
        recovered = time.monotonic()
        drain = wait_notifier(r.settings, r.processes.check_alive)
        counts, grouped = asyncio.run(stored(r.settings, r.session, posts))
    wrong = {p: (counts[p], len(v)) for p, v in likers.items() if counts[p] != len(v)}
    misgrouped = {p: (grouped[p], len(v)) for p, v in likers.items() if grouped[p] != len(v)}
    outcome = Outcome("notifier kill -9 during a storm of likes and unlikes (like counts)", WAVES,
                      sum(map(len, likers.values())), sum(max(0, len(v) - counts[p]) for p, v in likers.items()),
                      sum(max(0, counts[p] - len(v)) for p, v in likers.items()), round(drain, 1),
                      stack_up.stack.nodes, "make test-faults PYTEST_ARGS='-k test_kill_9_the_notifier'",
                      {"lag_at_kill": lag_at_kill, "posts": len(posts), "events": WAVES * EVENTS_PER_WAVE,
                       "groups_off": len(misgrouped), "since_last_restart": round(time.monotonic() - recovered, 1)})
    outcome.record()
    assert all(lag > 0 for lag in lag_at_kill), f"a kill came when nothing was in flight: {lag_at_kill}"
    assert wrong == {}, f"like counts differ from the likes sent: {wrong}"
    assert misgrouped == {}, f"groups do not hold each post's likers once: {misgrouped}"


def wait_notifier(s: Settings, check_alive: Callable[[], None], timeout: float = 300) -> float:
    started = time.monotonic()
    while consumer_lag(s, notifier=True) > 0:
        check_alive()
        assert time.monotonic() - started < timeout, "the notifier did not drain"
        time.sleep(0.5)
    return time.monotonic() - started


Post = tuple[int, int]


async def stored(s: Settings, session: Session, posts: list[Post]) -> tuple[dict[Post, int], dict[Post, int]]:
    """Each post's stored like count, and the actors summed over its groups."""
    store = CassandraNotifications(Cassandra(session, s, Metrics()), s.notification_retention_days * 86_400)
    counts = {p: (await store.actors(p[0], "like", p[1], 0))[0] for p in posts}
    grouped: dict[tuple[int, int], int] = dict.fromkeys(posts, 0)
    for author in AUTHORS:
        page = await store.notification_page(author, None, 1000)
        for g in page.groups:
            grouped[(author, g.target)] += g.actors
    return counts, grouped
