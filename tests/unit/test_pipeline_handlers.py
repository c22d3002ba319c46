"""The worker's handlers (fanout/write/pipeline.py, fanout/write/handlers/) on the in-memory adapter: no servers.

The e2e tests cover the same flows through Kafka and Cassandra; these add the edge cases that are slow to
reach end to end (chunk boundaries, replays after a threshold change, purges racing a follow again, a
returning reader's rebuild). Chunk tasks are collected and handled when a test says so, as the worker would
from the chunks topic.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from fanout.adapters.memory import MemoryStorage
from fanout.api.auth import Tokens, TokenVerifier
from fanout.core.events import (
    CelebrityChunk,
    CelebritySetChanged,
    ChunkTask,
    DemotionChunk,
    Event,
    FeedUpdate,
    FollowChanged,
    Followed,
    InboxChunk,
    InboxPurge,
    InvalidEvent,
    PostCreated,
    PostDeleted,
    PostDelivered,
    PostRemoved,
    PostStored,
    SeenChunk,
    Unfollowed,
    UserSeen,
)
from fanout.core.ids import PostIdGenerator, millis_of
from fanout.core.model import Tier
from fanout.core.policy import lossy_audience
from fanout.metrics import Metrics, sample
from fanout.read.api import create_app as create_read_app
from fanout.read.feed import home_feed
from fanout.settings import Settings
from fanout.write.pipeline import Pipeline, no_updates

DAY_MS = 86_400_000


class World:
    """A pipeline on fresh in-memory stores, with a clock and the chunk tasks it sent."""

    def __init__(self, **overrides: Any) -> None:
        self.settings = Settings.load(env={}, **{"celebrity_threshold": 5, "chunk_size": 3, **overrides})
        self.stores = MemoryStorage(self.settings).stores()
        self.metrics = Metrics()
        self.tasks: list[ChunkTask] = []
        self.updates: list[FeedUpdate] = []
        self.ids = PostIdGenerator(node=1)
        self.t = millis_of(self.ids.next_id())
        self.pipeline = Pipeline(self.stores, self.settings, self.metrics, self._send, self._update,
                                 clock_ms=lambda: self.t)

    async def _send(self, task: ChunkTask) -> None:
        self.tasks.append(task)

    async def _update(self, updates: Sequence[FeedUpdate]) -> None:
        self.updates.extend(updates)

    async def handle(self, *events: Event, run_tasks: bool = True) -> None:
        for e in events:
            await self.pipeline.handle(e)
        if run_tasks:
            await self.run_tasks()

    async def run_tasks(self) -> None:
        while self.tasks:
            await self.pipeline.handle(self.tasks.pop(0))

    def tick(self, ms: int = 1) -> int:
        self.t += ms
        return self.t

    async def follow(self, follower: int, author: int, run_tasks: bool = True) -> None:
        await self.handle(Followed(event_time=self.tick(), follower_id=follower, followee_id=author),
                          run_tasks=run_tasks)

    async def unfollow(self, follower: int, author: int, run_tasks: bool = True) -> None:
        await self.handle(Unfollowed(event_time=self.tick(), follower_id=follower, followee_id=author),
                          run_tasks=run_tasks)

    def new_post(self, author: int) -> PostCreated:
        pid = self.ids.next_id()
        self.t = max(self.t, millis_of(pid)) + 1
        return PostCreated(event_time=millis_of(pid), post_id=pid, author_id=author, body=f"by {author}")

    async def post(self, author: int, run_tasks: bool = True) -> PostCreated:
        event = self.new_post(author)
        await self.handle(event, run_tasks=run_tasks)
        return event

    async def seen(self, user: int, at: int) -> None:
        await self.handle(UserSeen(event_time=at, user_id=user))

    async def inbox(self, user: int) -> list[int]:
        return await self.stores.inboxes.inbox_head(user, None, 1000)

    async def feed(self, user: int) -> list[int]:
        page = (await home_feed(self.stores, self.settings, user, 100, None, self.t)).page
        return [p.post_id for p in page.items]

    def metric(self, name: str, **labels: str) -> float:
        return sample(self.metrics, name, labels)


_users = itertools.count(100)


def users(n: int) -> list[int]:
    return [next(_users) for _ in range(n)]


# --- posts -------------------------------------------------------------------------------------------------


async def test_a_normal_authors_post_is_pushed_to_each_follower_once() -> None:
    w = World()
    author, *fans = users(4)
    for fan in fans:
        await w.follow(fan, author)
    post = await w.post(author)
    await w.handle(post)  # a replay writes the same rows again
    for fan in fans:
        assert await w.inbox(fan) == [post.post_id]
        assert await w.feed(fan) == [post.post_id]
    assert (await w.stores.posts.stored_post(post.post_id)).tier is Tier.PUSH  # type: ignore[union-attr]
    assert w.metric("fanout_posts_total", tier="push") == 2


async def test_the_last_inbox_write_is_stamped_with_the_workers_clock() -> None:
    w = World()
    author, fan = users(2)
    await w.follow(fan, author)
    assert w.metric("fanout_last_inbox_write_timestamp_seconds") == 0  # a backfill is not a fan-out
    await w.post(author)
    written = w.t
    w.tick(5_000)
    await w.post(users(1)[0])  # an author with no followers writes no row
    assert w.metric("fanout_last_inbox_write_timestamp_seconds") == written / 1000


async def test_a_celebritys_post_is_indexed_only_and_merged_at_read() -> None:
    w = World()
    author, *fans = users(6)
    for fan in fans:
        await w.follow(fan, author)  # the fifth follower promotes the author
    post = await w.post(author)
    assert all([await w.inbox(fan) == [] for fan in fans])
    assert await w.stores.posts.timeline_head(author, None, 5) == [post.post_id]
    assert all([await w.feed(fan) == [post.post_id] for fan in fans])
    assert w.metric("fanout_inbox_rows_written_total") == 0


@pytest.mark.parametrize(("followers", "chunks"), [(3, 0), (4, 2), (6, 2), (7, 3)])
async def test_fan_outs_beyond_one_chunk_become_chunk_tasks_covering_every_follower(followers: int,
                                                                                    chunks: int) -> None:
    w = World(celebrity_threshold=100)
    author, *fans = users(followers + 1)
    for fan in fans:
        await w.follow(fan, author)
    post = await w.post(author, run_tasks=False)
    sent = [t for t in w.tasks if isinstance(t, InboxChunk)]
    assert len(sent) == chunks
    if chunks:
        assert sorted(f for t in sent for f in t.follower_ids) == fans
        assert {t.chunks for t in sent} == {chunks} and sorted(t.chunk for t in sent) == list(range(chunks))
    await w.run_tasks()
    assert all([await w.inbox(fan) == [post.post_id] for fan in fans])


async def test_inactive_followers_are_skipped_and_their_feed_is_rebuilt_when_they_return() -> None:
    w = World()
    author, active, away = users(3)
    await w.follow(active, author)
    await w.follow(away, author)
    await w.seen(active, w.t)
    await w.seen(away, w.t - 10 * DAY_MS)  # last read ten days ago
    post = await w.post(author)
    assert await w.inbox(active) == [post.post_id]
    assert await w.inbox(away) == []
    assert w.metric("fanout_inactive_followers_skipped_total") == 1
    feed = await home_feed(w.stores, w.settings, away, 10, None, w.t)  # back: answered by a pull at once
    assert feed.regenerating and [p.post_id for p in feed.page.items] == [post.post_id]
    await w.seen(away, w.t)  # the read's UserSeen: the worker rebuilds the inbox
    assert await w.inbox(away) == [post.post_id]
    assert not (await home_feed(w.stores, w.settings, away, 10, None, w.t)).regenerating
    later = await w.post(author)  # pushes reach the returned reader again
    assert await w.inbox(away) == [later.post_id, post.post_id]
    assert w.metric("fanout_regenerations_total", phase="finished") == 1


async def test_a_returning_readers_pull_beyond_its_limit_reads_the_inbox_instead() -> None:
    """A returning reader's pull reads every followee's timeline: the read service's per-user limit
    (`may_pull`) turns the reads beyond it into inbox reads, still marked regenerating."""
    w = World()
    author, away = users(2)
    await w.follow(away, author)
    await w.seen(away, w.t - 10 * DAY_MS)
    post = await w.post(author)  # not pushed: the reader is away
    pulled = await home_feed(w.stores, w.settings, away, 10, None, w.t, may_pull=lambda: True)
    assert pulled.regenerating and [p.post_id for p in pulled.page.items] == [post.post_id]
    limited = await home_feed(w.stores, w.settings, away, 10, None, w.t, may_pull=lambda: False)
    assert limited.regenerating and limited.page.items == []  # the inbox, not rebuilt yet


async def test_a_returning_readers_rebuild_runs_in_chunk_tasks_and_the_last_one_ends_it() -> None:
    """No single event holds its partition for the whole rebuild of a reader who follows many accounts."""
    w = World(rebuild_chunk_authors=2, celebrity_threshold=100)
    reader, *authors = users(5)
    for author in authors:
        await w.follow(reader, author)
    await w.seen(reader, w.t - 10 * DAY_MS)
    posts = [await w.post(author) for author in authors]
    assert await w.inbox(reader) == []
    await w.handle(UserSeen(event_time=w.tick(), user_id=reader), run_tasks=False)
    rebuild = [t for t in w.tasks if isinstance(t, SeenChunk)]
    assert [(t.user_id, len(t.author_ids), t.rebuild, t.chunk, t.chunks) for t in rebuild] == [
        (reader, 2, True, 0, 2), (reader, 2, True, 1, 2)]
    assert sorted(a for t in rebuild for a in t.author_ids) == sorted(authors)
    assert {t.key for t in rebuild} == {str(reader).encode()}  # one key: they run in order
    await w.pipeline.handle(w.tasks.pop(0))
    assert (await home_feed(w.stores, w.settings, reader, 10, None, w.t)).regenerating  # not done yet
    await w.run_tasks()
    assert not (await home_feed(w.stores, w.settings, reader, 10, None, w.t)).regenerating
    assert sorted(await w.inbox(reader)) == sorted(p.post_id for p in posts)
    assert w.metric("fanout_regenerations_total", phase="finished") == 1


async def test_a_read_by_a_reader_following_more_than_a_chunk_marks_the_edges_seen_in_chunk_tasks() -> None:
    """A reader who follows many accounts: the edges' new last_seen in tasks of FANOUT_CHUNK_SIZE followees,
    not inside the feed read. Until a chunk runs, its followees' edges keep the older last_seen."""
    w = World(chunk_size=2, celebrity_threshold=100)
    reader, *authors = users(6)
    for author in authors:
        await w.follow(reader, author)
    await w.seen(reader, w.t - 2 * DAY_MS)  # back within FANOUT_ACTIVE_DAYS: no rebuild
    delivery = w.pipeline.executor
    since = w.t - DAY_MS
    assert [await delivery.active_followers(a, since) for a in authors] == [[]] * 5
    await w.handle(UserSeen(event_time=w.tick(), user_id=reader), run_tasks=False)
    assert [(len(t.author_ids), t.rebuild, t.chunk, t.chunks) for t in w.tasks if isinstance(t, SeenChunk)] == [
        (2, False, 0, 3), (2, False, 1, 3), (1, False, 2, 3)]
    assert [await delivery.active_followers(a, since) for a in authors] == [[]] * 5
    await w.pipeline.handle(w.tasks.pop(0))
    assert [await delivery.active_followers(a, since) for a in authors] == [[reader]] * 2 + [[]] * 3
    await w.run_tasks()
    assert [await delivery.active_followers(a, since) for a in authors] == [[reader]] * 5
    assert w.metric("fanout_regenerations_total", phase="started") == 0


async def test_a_read_by_a_reader_following_a_chunk_or_fewer_marks_the_edges_seen_at_once() -> None:
    w = World(chunk_size=5)
    reader, *authors = users(6)
    for author in authors:
        await w.follow(reader, author)
    await w.seen(reader, w.t - 2 * DAY_MS)
    await w.handle(UserSeen(event_time=w.tick(), user_id=reader), run_tasks=False)
    assert w.tasks == []
    assert [await w.pipeline.executor.active_followers(a, w.t - DAY_MS) for a in authors] == [[reader]] * 5


async def test_the_stored_tier_wins_when_a_post_is_replayed_after_a_threshold_change() -> None:
    w = World()
    author, *fans = users(6)
    for fan in fans[:4]:
        await w.follow(fan, author)
    post = await w.post(author)
    await w.follow(fans[4], author)  # now a celebrity
    await w.handle(post)  # the replay keeps the tier decided first: pushed, not suddenly pulled
    assert (await w.stores.posts.stored_post(post.post_id)).tier is Tier.PUSH  # type: ignore[union-attr]
    assert await w.inbox(fans[0]) == [post.post_id]


async def test_read_services_are_told_of_every_stored_post_and_applied_delete() -> None:
    w = World()
    author, *fans = users(6)
    for fan in fans:
        await w.follow(fan, author)
    w.updates.clear()
    pulled = await w.post(author)
    await w.handle(PostDeleted(event_time=w.tick(), post_id=pulled.post_id, author_id=author))
    stored = PostStored(event_time=pulled.event_time, post_id=pulled.post_id, author_id=author, tier="pull",
                        body=pulled.body)
    assert w.updates == [stored, PostRemoved(event_time=w.t, post_id=pulled.post_id, author_id=author)]


async def test_read_services_are_told_of_deliveries_and_follow_changes() -> None:
    w = World(chunk_size=2)
    author, *fans = users(4)
    for fan in fans:
        await w.follow(fan, author)
    follows = [(u.follower_id, u.following) for u in w.updates if isinstance(u, FollowChanged)]
    assert follows == [(f, True) for f in fans]
    w.updates.clear()
    post = await w.post(author)  # three followers, chunks of two: two deliveries
    delivered = [u for u in w.updates if isinstance(u, PostDelivered)]
    assert sorted(f for u in delivered for f in u.user_ids) == fans
    assert all(u.post_id == post.post_id for u in delivered) and len(delivered) == 2


async def test_only_the_authors_delete_removes_a_post_from_every_feed() -> None:
    w = World()
    author, impostor, pushed_fan = users(3)
    await w.follow(pushed_fan, author)
    post = await w.post(author)
    await w.handle(PostDeleted(event_time=w.tick(), post_id=post.post_id, author_id=impostor))
    assert await w.feed(pushed_fan) == [post.post_id]
    assert w.metric("fanout_deletes_refused_total") == 1  # refused: it names someone else as the author
    await w.handle(PostDeleted(event_time=w.tick(), post_id=post.post_id, author_id=author))
    assert await w.feed(pushed_fan) == []
    assert await w.inbox(pushed_fan) == [post.post_id]  # no inbox row is touched: reads filter deletes
    await w.handle(PostDeleted(event_time=w.tick(60_000), post_id=post.post_id, author_id=impostor))
    assert await w.feed(pushed_fan) == []  # whatever arrives later, a deleted post never comes back
    assert (w.metric("fanout_deletes_refused_total"), w.metric("fanout_deletes_applied_total")) == (2, 1)


async def test_a_post_under_an_id_of_another_authors_post_is_refused_and_writes_nothing() -> None:
    w = World()
    author, impostor, fan = users(3)
    await w.follow(fan, author)
    await w.follow(fan, impostor)
    post = await w.post(author)
    forged = PostCreated(event_time=post.event_time, post_id=post.post_id, author_id=impostor, body="mine now")
    with pytest.raises(InvalidEvent, match="post_id_taken|is user"):
        await w.handle(forged)
    [stored] = (await w.stores.posts.posts([post.post_id])).values()
    assert (stored.author_id, stored.body) == (author, post.body)
    assert await w.feed(fan) == [post.post_id]
    await w.handle(post)  # the author's own replay is still fine


async def test_a_delete_of_a_post_not_stored_is_refused_and_writes_nothing() -> None:
    """A post and its author's delete share the author's key, so the post is stored first; a delete that
    finds nothing is of no post or of someone else's post still on its way, and leaves no row behind."""
    w = World()
    author, impostor, fan = users(3)
    await w.follow(fan, author)
    mine, theirs = w.new_post(author), w.new_post(author)
    await w.handle(PostDeleted(event_time=w.tick(), post_id=mine.post_id, author_id=author))
    await w.handle(PostDeleted(event_time=w.tick(), post_id=theirs.post_id, author_id=impostor))
    assert await w.stores.posts.posts([mine.post_id, theirs.post_id]) == {}  # no claim, no row
    assert w.metric("fanout_deletes_refused_total") == 2
    await w.handle(mine)
    await w.handle(theirs)
    assert await w.feed(fan) == [theirs.post_id, mine.post_id]


async def test_an_inbox_is_trimmed_to_its_cap_and_pages_below_it_come_from_the_timelines() -> None:
    w = World(inbox_cap=10, inbox_trim_every=3, follow_backfill=0)
    reader, quiet, busy, celebrity, gone, *fans = users(9)
    for author in (quiet, busy, celebrity, gone):
        await w.follow(reader, author)
    for fan in fans:
        await w.follow(fan, celebrity)  # the fifth follower promotes it: its posts are pulled at read
    posts: dict[int, list[int]] = {a: [] for a in (quiet, busy, celebrity, gone)}
    most = 0
    for i in range(60):
        author = busy if i % 3 else (quiet if i % 2 else celebrity)
        if i % 10 == 5:
            author = gone
        posts[author].append((await w.post(author)).post_id)
        most = max(most, len(await w.inbox(reader)))
    assert most <= 10 + 3  # the cap, and what one worker pushes between two trims
    trimmed_below = (await w.stores.readers.reader_page(reader, None, 1)).trimmed_below
    assert trimmed_below == min(await w.inbox(reader)) and trimmed_below > min(posts[busy])
    doomed = posts[busy][1]  # below the trim: deleted, it is left out of the deep pages too
    await w.handle(PostDeleted(event_time=w.tick(), post_id=doomed, author_id=busy))
    await w.unfollow(reader, gone)
    expected = sorted((p for a in (quiet, busy, celebrity) for p in posts[a] if p != doomed), reverse=True)
    for limit in range(1, 16):  # one of them ends a page exactly at the trim boundary
        paged: list[int] = []
        cursor: int | None = None
        while True:
            page = (await home_feed(w.stores, w.settings, reader, limit, cursor, w.t)).page
            paged += [p.post_id for p in page.items]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert paged == expected, limit
    assert w.metric("fanout_inbox_rows_trimmed_total") > 0
    assert w.metric("fanout_author_post_rate_per_day_count") == 60  # one observation per post
    assert w.pipeline.post_rates.rate(busy, w.t) > w.pipeline.post_rates.rate(quiet, w.t) > 0



async def test_pages_below_the_cap_count_against_the_pull_limit_and_get_a_429_beyond_it(tmp_path: Path) -> None:
    w = World(inbox_cap=5, inbox_trim_every=1, follow_backfill=0, rate_limit_pulls="2/minute",
              jwt_secret_file=str(tmp_path / "secret"))
    reader, author = users(2)
    await w.follow(reader, author)
    posts = [(await w.post(author)).post_id for _ in range(12)]
    app = create_read_app(w.stores, w.settings, w.metrics, TokenVerifier(w.settings), clock_ms=lambda: w.t)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1",
                                 headers=Tokens(w.settings).headers(reader)) as client:
        async def page(**params: Any) -> httpx.Response:
            return await client.get("/v1/feed", params={"limit": 3, **params})

        for _ in range(3):  # the head, from the inbox: never limited
            assert (await page()).status_code == 200
        deep = [await page(cursor=posts[6]) for _ in range(3)]  # below the newest 5: a read per followee
        assert [r.status_code for r in deep] == [200, 200, 429]
        assert [p["post_id"] for p in deep[0].json()["items"]] == posts[3:6][::-1]
        assert int(deep[2].headers["Retry-After"]) >= 1 and "every account followed" in deep[2].json()["error"]
    assert w.metric("fanout_rate_limited_total", kind="pulls") == 1



async def test_an_over_follower_gets_a_share_of_the_posts_with_the_lossy_rule_and_everyone_else_all() -> None:
    w = World(lossy_follows=2, chunk_size=4, celebrity_threshold=1000)
    author, *others = users(5)
    over, normal, *fans = users(9)
    for followee in (author, *others[:3]):
        await w.follow(over, followee)  # four accounts: above the limit of 2
    for reader in (normal, *fans):
        await w.follow(reader, author)
    await w.seen(over, w.tick())  # the read copies the follow count onto the edges
    pushed = [(await w.post(author)).post_id for _ in range(120)]
    audience = sorted([over, normal, *fans])  # listed in follower id order
    kept = {p for p in pushed if over in lossy_audience(audience, {over: 4}, p, 4, 2)[0]}
    assert 0 < len(kept) < len(pushed)  # min(2/4, 1): about half the posts
    assert set(await w.inbox(over)) == kept  # exactly the draws of the rule
    assert set(await w.inbox(normal)) >= set(pushed)  # a reader at or below the limit misses nothing
    assert w.metric("fanout_lossy_rows_skipped_total") == len(pushed) - len(kept)



# --- the follow graph ---------------------------------------------------------------------------------------


async def test_a_follow_backfills_recent_posts_and_an_unfollow_hides_then_purges_them() -> None:
    w = World(follow_backfill=2)
    author, fan, other = users(3)
    posts = [await w.post(author) for _ in range(3)]
    await w.follow(fan, author)
    assert await w.inbox(fan) == [posts[2].post_id, posts[1].post_id]  # the latest FANOUT_FOLLOW_BACKFILL
    await w.follow(fan, other)
    theirs = await w.post(other)
    await w.unfollow(fan, author, run_tasks=False)
    assert await w.feed(fan) == [theirs.post_id]  # hidden at once ...
    assert [type(t) for t in w.tasks] == [InboxPurge]
    w.tick(5)
    await w.run_tasks()
    assert await w.inbox(fan) == [theirs.post_id]  # ... and purged in the background
    assert w.metric("fanout_purged_rows_total") == 2


async def test_a_purge_spares_the_rows_of_a_follow_again_that_came_first() -> None:
    w = World(follow_backfill=5)
    author, fan = users(2)
    post = await w.post(author)
    await w.follow(fan, author)
    await w.unfollow(fan, author, run_tasks=False)  # the purge waits on the chunks topic ...
    await w.follow(fan, author)  # ... while the follow again is processed
    await w.run_tasks()
    assert await w.inbox(fan) == [post.post_id]
    assert await w.feed(fan) == [post.post_id]


async def test_a_stale_unfollow_changes_nothing() -> None:
    w = World()
    author, fan = users(2)
    follow_at = w.tick(10)
    await w.handle(Followed(event_time=follow_at, follower_id=fan, followee_id=author))
    await w.handle(Unfollowed(event_time=follow_at - 5, follower_id=fan, followee_id=author))
    assert (await w.stores.graph.author_stats(author)).follower_count == 1
    assert await w.stores.graph.following(fan, 10) == [author]
    assert await w.stores.readers.hidden_authors(fan) == set()
    assert w.tasks == []


async def test_a_promotion_moves_existing_followers_to_the_pull_side() -> None:
    w = World()
    author, *fans = users(6)
    for fan in fans[:4]:
        await w.follow(fan, author)
    await w.follow(fans[4], author, run_tasks=False)
    promoted = [t for t in w.tasks if isinstance(t, CelebrityChunk)]
    assert sorted(f for t in promoted for f in t.follower_ids) == fans[:4]  # the fifth is handled inline
    await w.run_tasks()
    assert all([await w.stores.readers.celebrities(fan) == [author] for fan in fans])
    assert w.metric("fanout_tier_switches_total", direction="to_pull") == 1
    # Read services learn whose sets changed, to drop what they cached of those readers.
    changed = [u for u in w.updates if isinstance(u, CelebritySetChanged)]
    assert sorted(f for u in changed for f in u.user_ids) == fans[:4] and all(u.celebrity for u in changed)


async def test_a_demotion_backfills_pulled_posts_before_leaving_the_celebrity_sets() -> None:
    w = World(celebrity_threshold=4, celebrity_demote_ratio=0.5)
    author, *fans = users(5)
    for fan in fans:
        await w.follow(fan, author)
    pulled = await w.post(author)
    assert await w.inbox(fans[0]) == []
    await w.unfollow(fans[3], author)
    await w.unfollow(fans[2], author, run_tasks=False)  # 2 left: not below 4 x 0.5 yet
    assert not any(isinstance(t, DemotionChunk) for t in w.tasks)
    await w.run_tasks()
    await w.unfollow(fans[1], author, run_tasks=False)  # 1 left: demoted
    [demotion] = [t for t in w.tasks if isinstance(t, DemotionChunk)]
    assert demotion.until_post_id == pulled.post_id and demotion.follower_ids == (fans[0],)
    await w.run_tasks()
    assert await w.inbox(fans[0]) == [pulled.post_id]
    assert await w.stores.readers.celebrities(fans[0]) == []
    [changed] = [u for u in w.updates if isinstance(u, CelebritySetChanged) and not u.celebrity]
    assert changed.user_ids == (fans[0],)
    pushed = await w.post(author)
    assert await w.feed(fans[0]) == [pushed.post_id, pulled.post_id]


# --- strategies -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["push", "pull"])
async def test_the_baselines_deliver_every_post_one_way(strategy: str) -> None:
    w = World(strategy=strategy)
    author, *fans = users(7)
    for fan in fans:
        await w.follow(fan, author)  # past the threshold: the hybrid would pull
    post = await w.post(author)
    rows = [await w.inbox(fan) for fan in fans]
    assert rows == ([[post.post_id]] * 6 if strategy == "push" else [[]] * 6)
    assert all([await w.feed(fan) == [post.post_id] for fan in fans])


async def test_updates_are_sent_together_and_not_built_without_a_read_service() -> None:
    w = World()
    built: list[int] = []

    def updates() -> Iterator[FeedUpdate]:
        for f in (11, 12):
            built.append(f)
            yield FollowChanged(event_time=w.t, follower_id=f, followee_id=1, following=True)

    await w.pipeline.executor.send_updates(updates())
    assert [u.follower_id for u in w.updates if isinstance(u, FollowChanged)] == [11, 12]
    built.clear()
    quiet = Pipeline(w.stores, w.settings, w.metrics, w._send, no_updates)  # a bulk import's
    await quiet.executor.send_updates(updates())
    assert built == []
