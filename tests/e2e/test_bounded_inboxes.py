"""Bounded inboxes on the real stack: the worker trims a busy reader's inbox to the cap as it pushes, and the
reader still pages through every post of the accounts they follow, the pages below the trim read from
the authors' timelines (fanout/write/trimming.py, fanout/read/feed.py)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from live import Deployment, deploy

from fanout.core.events import Event, Followed, PostCreated, PostDeleted, Unfollowed
from fanout.core.ids import PostIdGenerator, millis_of
from fanout.settings import Settings

pytestmark = pytest.mark.e2e

CAP, EVERY = 40, 6
_post_ids = PostIdGenerator(node=1021)
_users = itertools.count(8_100_000)


@pytest.fixture(scope="module")
def live(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with deploy(stack, tmp_path_factory.mktemp("logs"), "inboxcap", celebrity_threshold=3, inbox_cap=CAP,
                inbox_trim_every=EVERY) as d:
        yield d


def post(author: int) -> PostCreated:
    pid = _post_ids.next_id()
    return PostCreated(event_time=millis_of(pid), post_id=pid, author_id=author, body=f"by {author}")


def test_a_busy_readers_inbox_stays_at_the_cap_and_every_post_is_still_paged(live: Deployment) -> None:
    reader, quiet, busy, celebrity, gone, fan, other_fan = (next(_users) for _ in range(7))
    follows: list[Event] = [Followed(event_time=millis_of(_post_ids.next_id()), follower_id=f, followee_id=a)
                            for f, a in [(reader, quiet), (reader, busy), (reader, celebrity), (reader, gone),
                                         (fan, celebrity), (other_fan, celebrity)]]
    live.publish(follows)
    live.drain()
    posts: dict[int, list[int]] = {a: [] for a in (quiet, busy, celebrity, gone)}
    most = 0
    for _ in range(8):
        events = [post(busy if i % 3 else (quiet, celebrity, gone)[i % 9 // 3]) for i in range(30)]
        for e in events:
            posts[e.author_id].append(e.post_id)
        live.publish(events)
        live.drain()
        most = max(most, len(live.inbox(reader)))
    assert most <= CAP + EVERY  # the cap, and what one worker pushes between two trims
    assert live.worker_metric("fanout_inbox_rows_trimmed_total") >= 4 * 30 - CAP - EVERY
    [statics] = live.cql("SELECT trimmed_below FROM inbox WHERE user_id = %s LIMIT 1", reader)
    assert statics.trimmed_below > min(posts[busy])
    doomed = posts[busy][3]  # below the trim: deleted, it is left out of the deep pages too
    live.publish([PostDeleted(event_time=millis_of(_post_ids.next_id()), post_id=doomed, author_id=busy),
                  Unfollowed(event_time=millis_of(_post_ids.next_id()), follower_id=reader, followee_id=gone)])
    live.drain()
    expected = sorted((p for a in (quiet, busy, celebrity) for p in posts[a] if p != doomed), reverse=True)
    assert live.feed(reader, page=9) == expected
    first = live.read(reader, limit=CAP + 30)  # one page across the trim boundary
    assert [item["post_id"] for item in first["items"]] == expected[:CAP + 30]
    [statics] = live.cql("SELECT trimmed_below FROM inbox WHERE user_id = %s LIMIT 1", reader)
    below = [item["via"] for item in first["items"] if item["post_id"] < statics.trimmed_below]
    assert below and set(below) == {"timeline"}
    # The decayed rates of the per-pair rule, as distributions: one observation per post stored, per read.
    assert live.worker_metric("fanout_author_post_rate_per_day_count") >= 8 * 30
    reads = live.processes.scrape("read-api")
    assert reads["fanout_reader_view_rate_per_day_count"] >= len(expected) // 9 + 1
