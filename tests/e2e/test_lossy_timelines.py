"""Lossy timelines for over-followers on the real stack (FANOUT_LOSSY_FOLLOWS, fanout/core/policy.py
lossy_audience): after a read copies the reader's follow count onto their edges, a reader following more
accounts than the limit gets the rows the rule keeps, exactly (the draws are a hash of post and chunk), and
everyone else every row."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from live import Deployment, deploy

from fanout.core.events import Event, Followed, PostCreated, UserSeen
from fanout.core.ids import PostIdGenerator, millis_of
from fanout.core.policy import lossy_audience
from fanout.settings import Settings

pytestmark = pytest.mark.e2e

LIMIT, CHUNK = 2, 5
_post_ids = PostIdGenerator(node=1022)
_users = itertools.count(8_200_000)


@pytest.fixture(scope="module")
def live(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with deploy(stack, tmp_path_factory.mktemp("logs"), "lossy", lossy_follows=LIMIT, chunk_size=CHUNK) as d:
        yield d


def test_an_over_follower_gets_exactly_the_rows_the_rule_keeps(live: Deployment) -> None:
    author, *others = (next(_users) for _ in range(4))
    over, *fans = (next(_users) for _ in range(12))  # 12 followers: three chunk tasks of 5
    t = millis_of(_post_ids.next_id())
    follows: list[Event] = [Followed(event_time=t + i, follower_id=over, followee_id=a)
                            for i, a in enumerate((author, *others))]
    follows += [Followed(event_time=t + 10 + i, follower_id=f, followee_id=author) for i, f in enumerate(fans)]
    live.publish(follows)
    live.drain()
    live.publish([UserSeen(event_time=millis_of(_post_ids.next_id()), user_id=over)])  # as a read sends it
    live.drain()
    [edge] = live.cql("SELECT follows FROM followers_by_author WHERE author_id = %s AND follower_id = %s",
                      author, over)
    assert edge.follows == 4
    posts = []
    for _ in range(40):
        pid = _post_ids.next_id()
        posts.append(PostCreated(event_time=millis_of(pid), post_id=pid, author_id=author, body="x"))
    live.publish(posts)
    live.drain()
    audience = sorted([over, *fans])  # paged in follower id order, as the worker does
    expected = {p.post_id for p in posts
                if over in lossy_audience(audience, {over: 4}, p.post_id, CHUNK, LIMIT)[0]}
    assert 0 < len(expected) < len(posts)
    assert {r.post_id for r in live.inbox(over)} == expected
    assert all({r.post_id for r in live.inbox(f)} == {p.post_id for p in posts} for f in fans)
    assert live.worker_metric("fanout_lossy_rows_skipped_total") == len(posts) - len(expected)
