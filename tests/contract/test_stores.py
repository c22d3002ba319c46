"""The ports' contract (fanout/core/ports.py), on the in-memory adapter and on real Cassandra alike."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

from fanout.core.ids import PostIdGenerator, millis_of
from fanout.core.model import Activity, AuthorStats, Edge, EdgeChange, ReaderSets, Tier
from fanout.core.ports import Stores

_post_ids = PostIdGenerator(node=1002)


def post_id() -> int:
    return _post_ids.next_id()


def now_us() -> int:
    return time.time_ns() // 1000


# --- posts and timelines ---------------------------------------------------------------------------------


async def test_a_saved_post_reads_back_with_its_tier(stores: Stores, new_id: Iterator[int]) -> None:
    author, pid = next(new_id), post_id()
    assert await stores.posts.stored_post(pid) is None
    await stores.posts.save_post(pid, author, "héllo", Tier.PULL)
    assert await stores.posts.stored_post(pid) == (author, Tier.PULL)
    [post] = (await stores.posts.posts([pid, post_id()])).values()  # an unknown id is left out
    assert (post.post_id, post.author_id, post.body, post.deleted) == (pid, author, "héllo", False)
    assert post.created_at == millis_of(pid)


async def test_only_the_author_deletes_and_a_delete_beats_its_post_in_any_order(stores: Stores,
                                                                               new_id: Iterator[int]) -> None:
    author, other = next(new_id), next(new_id)
    early, late, claimed = post_id(), post_id(), post_id()
    await stores.posts.mark_deleted(early, author, millis_of(early) - 5_000)  # before the post, older clock
    for pid in (early, late, claimed):
        await stores.posts.save_post(pid, author, "x", Tier.PUSH)
    await stores.posts.mark_deleted(late, author, millis_of(late) + 1)
    await stores.posts.mark_deleted(claimed, other, millis_of(claimed) + 1)
    await stores.posts.save_post(late, author, "x", Tier.PUSH)  # a replay of the create changes nothing
    posts = await stores.posts.posts([early, late, claimed])
    assert {pid: p.deleted for pid, p in posts.items()} == {early: True, late: True, claimed: False}


async def test_a_deleted_post_never_comes_back_whatever_arrives_later(stores: Stores, new_id: Iterator[int]) -> None:
    author, other = next(new_id), next(new_id)
    pid = post_id()
    await stores.posts.mark_deleted(pid, other, millis_of(pid) - 1)  # someone else's claim, even before the post
    await stores.posts.save_post(pid, author, "x", Tier.PUSH)
    await stores.posts.mark_deleted(pid, author, millis_of(pid) + 10)
    await stores.posts.mark_deleted(pid, other, millis_of(pid) + 20)  # later clock, later arrival
    await stores.posts.mark_deleted(pid, author, millis_of(pid) + 5)  # a late duplicate of the author's
    await stores.posts.save_post(pid, author, "x", Tier.PUSH)  # a replay of the create
    assert (await stores.posts.posts([pid]))[pid].deleted


async def test_timeline_heads_are_newest_first_below_the_bound(stores: Stores, new_id: Iterator[int]) -> None:
    author = next(new_id)
    pids = [post_id() for _ in range(5)]
    for pid in pids:
        await stores.posts.save_post(pid, author, "x", Tier.PUSH)
    newest_first = pids[::-1]
    assert await stores.posts.timeline_head(author, None, 10) == newest_first
    assert await stores.posts.timeline_head(author, None, 2) == newest_first[:2]
    assert await stores.posts.timeline_head(author, pids[2], 10) == [pids[1], pids[0]]
    assert await stores.posts.timeline_head(next(new_id), None, 10) == []
    heads = await asyncio.gather(stores.posts.latest_posts(author, 2), stores.posts.latest_posts(next(new_id), 2))
    assert heads == [newest_first[:2], []]


# --- the follow graph -------------------------------------------------------------------------------------


async def test_an_edge_and_the_author_stats_change_together(stores: Stores, new_id: Iterator[int]) -> None:
    author, fan = next(new_id), next(new_id)
    assert await stores.graph.author_stats(author) == AuthorStats(0, False, 0)
    assert await stores.graph.edge(author, fan) is None
    await stores.graph.set_edge(author, fan, Edge(True, 1000), AuthorStats(1, True, 7))
    assert await stores.graph.edge(author, fan) == Edge(True, 1000)
    assert await stores.graph.author_stats(author) == AuthorStats(1, True, 7)


async def test_edges_are_last_writer_wins_by_event_time(stores: Stores, new_id: Iterator[int]) -> None:
    author, fan = next(new_id), next(new_id)
    await stores.graph.set_edge(author, fan, Edge(False, 2000), AuthorStats(0, False, 2))
    await stores.graph.set_edge(author, fan, Edge(True, 1000), AuthorStats(1, False, 3))  # older: the edge stays
    assert await stores.graph.edge(author, fan) == Edge(False, 2000)
    await stores.graph.set_following(fan, author, False, 2000)
    await stores.graph.set_following(fan, author, True, 1000)
    assert await stores.graph.following(fan, 10) == []
    await stores.graph.set_following(fan, author, True, 3000)
    assert await stores.graph.following(fan, 10) == [author]


async def test_edges_of_a_run_are_read_and_committed_together(stores: Stores, new_id: Iterator[int]) -> None:
    author = next(new_id)
    fans = [next(new_id) for _ in range(4)]
    await stores.graph.set_edge(author, fans[0], Edge(True, 5000), AuthorStats(1, False, 1))
    assert await stores.graph.edges(author, [fans[0], fans[1]]) == {fans[0]: Edge(True, 5000)}
    changes = [EdgeChange(fans[0], Edge(False, 4000)),  # older than the stored edge: it stays
               EdgeChange(fans[1], Edge(True, 6000), last_seen=7_000),
               EdgeChange(fans[2], Edge(False, 6001), last_seen=8_000)]  # an unfollow carries no last_seen
    await stores.graph.set_edges(author, changes, AuthorStats(2, True, 9))
    assert await stores.graph.edges(author, fans) == {fans[0]: Edge(True, 5000), fans[1]: Edge(True, 6000),
                                                       fans[2]: Edge(False, 6001)}
    assert await stores.graph.author_stats(author) == AuthorStats(2, True, 9)
    page = await stores.graph.followers_page(author, 0, 10, seen_since=6_500)
    assert (page.active, page.skipped_inactive) == ([fans[0], fans[1]], 0)
    assert (await stores.graph.followers_page(author, 0, 10, seen_since=7_500)).active == [fans[0]]


async def test_stats_and_first_pages_of_many_authors_read_at_once(stores: Stores, new_id: Iterator[int]) -> None:
    authors = [next(new_id) for _ in range(5)]
    fans = [next(new_id) for _ in range(3)]
    for n, author in enumerate(authors):
        changes = [EdgeChange(f, Edge(True, 1000)) for f in fans[: n % 4]]
        await stores.graph.set_edges(author, changes, AuthorStats(len(changes), False, n + 1))
    stats, pages = await asyncio.gather(asyncio.gather(*(stores.graph.author_stats(a) for a in [*authors, 1])),
                                        asyncio.gather(*(stores.graph.followers_page(a, 0, 2) for a in authors)))
    assert stats == [AuthorStats(n % 4, False, n + 1) for n in range(5)] + [AuthorStats(0, False, 0)]
    assert [(p.active, p.next_after) for p in pages] == [([], None), (fans[:1], None), (fans[:2], fans[1]),
                                                         (fans[:2], fans[1]), ([], None)]


async def test_following_lists_followees_in_id_order_up_to_the_limit(stores: Stores, new_id: Iterator[int]) -> None:
    user = next(new_id)
    followees = [next(new_id) for _ in range(5)]
    for n, f in enumerate(followees):
        await stores.graph.set_following(user, f, n != 2, 1000)
    expected = [f for n, f in enumerate(followees) if n != 2]
    assert await stores.graph.following(user, 10) == expected
    assert await stores.graph.following(user, 2) == expected[:2]
    assert await stores.graph.following_count(user) == 4  # the unfollowed one is not counted
    assert await stores.graph.following_count(next(new_id)) == 0


async def test_follower_pages_skip_unfollowed_and_inactive_followers(stores: Stores, new_id: Iterator[int]) -> None:
    author = next(new_id)
    fans = [next(new_id) for _ in range(5)]
    # fans[0] never seen (counts as active), fans[1] seen recently, fans[2] long ago, fans[3] unfollowed
    seen = {fans[1]: 5_000, fans[2]: 100, fans[4]: 9_000}
    for n, fan in enumerate(fans):
        await stores.graph.set_edge(author, fan, Edge(n != 3, 1000 + n), AuthorStats(n, False, n + 1),
                                    last_seen=seen.get(fan))
    first = await stores.graph.followers_page(author, 0, 3, seen_since=1_000)
    assert (first.active, first.skipped_inactive, first.next_after) == ([fans[0], fans[1]], 1, fans[2])
    rest = await stores.graph.followers_page(author, fans[2], 3, seen_since=1_000)
    assert (rest.active, rest.skipped_inactive, rest.next_after) == ([fans[4]], 0, None)
    everyone = await stores.graph.followers_page(author, 0, 10)
    assert (everyone.active, everyone.skipped_inactive, everyone.next_after) == ([fans[0], fans[1], fans[2], fans[4]],
                                                                                 0, None)
    await stores.graph.set_edges_seen(fans[2], [author], 8_000)
    assert (await stores.graph.followers_page(author, 0, 10, seen_since=6_000)).active == [fans[0], fans[2], fans[4]]


async def test_a_page_names_the_follow_counts_of_its_over_followers_when_asked(stores: Stores,
                                                                              new_id: Iterator[int]) -> None:
    author, other = next(new_id), next(new_id)
    fans = [next(new_id) for _ in range(4)]
    for n, fan in enumerate(fans):
        await stores.graph.set_edge(author, fan, Edge(True, 1000 + n), AuthorStats(n + 1, False, n + 1))
    await stores.graph.set_edges_seen(fans[0], [author, other], 5_000, follows=3_000)
    await stores.graph.set_edges_seen(fans[1], [author], 5_000, follows=40)
    await stores.graph.set_edges_seen(fans[2], [author], 5_000, follows=2_500)
    await stores.graph.set_edges_seen(fans[2], [author], 6_000)  # a refresh without a count keeps the count
    page = await stores.graph.followers_page(author, 0, 10, over_follows=2_000)
    assert (page.active, dict(page.over_followers)) == (fans, {fans[0]: 3_000, fans[2]: 2_500})
    assert (await stores.graph.followers_page(author, 0, 10)).over_followers == {}  # not asked: not listed
    assert (await stores.graph.followers_page(author, 0, 10, seen_since=5_500, over_follows=2_000)
            ).over_followers == {fans[2]: 2_500}  # of the active followers only


# --- readers ----------------------------------------------------------------------------------------------


async def test_reader_state_holds_activity_celebrities_and_hidden_authors(stores: Stores,
                                                                         new_id: Iterator[int]) -> None:
    user, celeb, gone = next(new_id), next(new_id), next(new_id)
    assert (await stores.readers.reader_state(user)).activity == Activity(None, False)
    await stores.readers.set_activity(user, Activity(1234, True))
    await stores.readers.add_celebrity([user], celeb, 10)
    await stores.readers.hide_author(user, gone, 5000)
    state = await stores.readers.reader_state(user)
    assert (state.activity, state.celebrities, state.hidden) == (Activity(1234, True), [celeb], frozenset({gone}))
    assert await stores.readers.activity(user) == Activity(1234, True)


async def test_the_follower_side_of_many_changes_is_written_together(stores: Stores, new_id: Iterator[int]) -> None:
    author, a, b = next(new_id), next(new_id), next(new_id)
    await stores.graph.set_followings([(a, author, True, 2000), (b, author, True, 2000), (b, author, False, 1000)])
    await stores.readers.set_hidden([(a, author, True, 3000), (b, author, True, 1000), (b, author, False, 2000)])
    await stores.readers.set_celebrities([(a, author, True, 5), (b, author, True, 5), (b, author, False, 6)])
    assert [await stores.graph.following(u, 10) for u in (a, b)] == [[author], [author]]  # the older one lost
    assert [await stores.readers.hidden_authors(u) for u in (a, b)] == [{author}, set()]
    assert [await stores.readers.celebrities(u) for u in (a, b)] == [[author], []]


async def test_activities_of_many_users_are_read_at_once(stores: Stores, new_id: Iterator[int]) -> None:
    seen, never = next(new_id), next(new_id)
    await stores.readers.set_activity(seen, Activity(1234, False))
    assert await stores.readers.activities([seen, never, seen]) == {seen: Activity(1234, False),
                                                                   never: Activity(None, False)}
    assert await stores.readers.activities([]) == {}


async def test_celebrity_sets_follow_the_authors_versions(stores: Stores, new_id: Iterator[int]) -> None:
    user, a, b, c = next(new_id), next(new_id), next(new_id), next(new_id)
    await stores.readers.add_celebrity([user], a, 20)
    await stores.readers.remove_celebrity([user], a, 10)  # an older decision: stays in the set
    await stores.readers.remove_celebrity([user], b, 20)
    await stores.readers.add_celebrity([user], b, 10)  # an older decision: stays out
    await stores.readers.add_celebrity([user], c, 30)
    await stores.readers.remove_celebrity([user], c, 30)  # a remove at the same version wins
    assert await stores.readers.celebrities(user) == [a]
    many = [next(new_id) for _ in range(3)]
    assert await stores.readers.add_celebrity([user], many[0], 1) == 1
    for celeb in many[1:]:
        await stores.readers.add_celebrity([user], celeb, 1)
    assert await stores.readers.celebrities(user) == sorted([a, *many])  # all of them: reads never truncate


async def test_hiding_is_last_writer_wins_by_event_time(stores: Stores, new_id: Iterator[int]) -> None:
    user, author = next(new_id), next(new_id)
    await stores.readers.hide_author(user, author, 2000)
    await stores.readers.unhide_author(user, author, 1000)  # an older follow: still hidden
    assert await stores.readers.hidden_authors(user) == {author}
    await stores.readers.unhide_author(user, author, 3000)
    assert await stores.readers.hidden_authors(user) == set()
    await stores.readers.hide_author(user, author, 2500)  # older than the follow: stays unhidden
    assert await stores.readers.hidden_authors(user) == set()


# --- inboxes ----------------------------------------------------------------------------------------------


async def test_inbox_heads_are_newest_first_and_pushes_are_idempotent(stores: Stores, new_id: Iterator[int]) -> None:
    user, author = next(new_id), next(new_id)
    pids = [post_id() for _ in range(60)]  # more than one batch of rows
    assert await stores.inboxes.push_rows([(user, p) for p in pids], author) == 60
    await stores.inboxes.push_rows([(user, p) for p in pids[:10]], author)
    newest_first = pids[::-1]
    assert await stores.inboxes.inbox_head(user, None, 100) == newest_first
    assert await stores.inboxes.inbox_head(user, pids[5], 3) == newest_first[-5:-2]
    assert await stores.inboxes.inbox_head(next(new_id), None, 5) == []


async def test_a_purge_removes_only_that_authors_rows_written_before_it(stores: Stores,
                                                                       new_id: Iterator[int]) -> None:
    user, gone, kept = next(new_id), next(new_id), next(new_id)
    old = [post_id() for _ in range(3)]
    other = post_id()
    await stores.inboxes.push_rows([(user, p) for p in old], gone)
    await stores.inboxes.push_rows([(user, other)], kept)
    as_of = now_us()
    await asyncio.sleep(0.002)
    again = post_id()
    await stores.inboxes.push_rows([(user, again)], gone)  # a follow again, after the unfollow was processed
    assert await stores.inboxes.purge_inbox(user, gone, as_of) == 4  # every row of the author it saw ...
    assert await stores.inboxes.inbox_head(user, None, 10) == [again, other]  # ... but the newer one survives


async def test_a_trim_keeps_the_newest_rows_and_the_higher_boundary_whatever_the_order(stores: Stores,
                                                                                       new_id: Iterator[int]) -> None:
    user, author = next(new_id), next(new_id)
    pids = [post_id() for _ in range(30)]
    await stores.inboxes.push_rows([(user, p) for p in pids], author)
    assert await stores.inboxes.trim_inbox(user, 40) == 0  # under the cap: nothing to do
    assert (await stores.readers.reader_page(user, None, 1)).trimmed_below == 0
    assert await stores.inboxes.trim_inbox(user, 20) == 10
    assert await stores.inboxes.inbox_head(user, None, 100) == pids[::-1][:20]
    assert (await stores.readers.reader_page(user, None, 1)).trimmed_below == pids[10]
    assert await stores.inboxes.trim_inbox(user, 20) == 0  # a second trim at the cap: nothing more
    await asyncio.sleep(0.002)
    await stores.inboxes.push_rows([(user, p) for p in pids[:10]], author)  # below the boundary, after the trim:
    assert await stores.inboxes.inbox_head(user, None, 100) == pids[::-1]  # they survive its tombstone
    assert await stores.inboxes.trim_inbox(user, 25) == 5  # a trim to a lower boundary, written later ...
    assert await stores.inboxes.inbox_head(user, None, 100) == pids[::-1][:25]
    assert (await stores.readers.reader_page(user, None, 1)).trimmed_below == pids[10]  # ... never lowers it
    newer = [post_id() for _ in range(5)]
    await stores.inboxes.push_rows([(user, p) for p in newer], author)
    assert await stores.inboxes.trim_inbox(user, 20) == 10
    page = await stores.readers.reader_page(user, None, 3)
    assert (page.inbox, page.trimmed_below) == (newer[::-1][:3], pids[15])
    below = await stores.readers.reader_page(user, pids[3], 3)  # an empty slice still carries the boundary
    assert (below.inbox, below.trimmed_below) == ([], pids[15])


async def test_one_read_returns_the_readers_activity_with_their_inbox_head(stores: Stores,
                                                                         new_id: Iterator[int]) -> None:
    user, author = next(new_id), next(new_id)
    empty = await stores.readers.reader_page(user, None, 5)  # nothing known about this reader yet
    assert (empty.activity, empty.sets_version, empty.inbox) == (Activity(None, False), None, [])
    assert await stores.readers.reader_sets(user) == ReaderSets(None)
    pids = [post_id() for _ in range(4)]
    await stores.inboxes.push_rows([(user, p) for p in pids], author)
    await stores.readers.set_activity(user, Activity(77, False))
    page = await stores.readers.reader_page(user, None, 3)
    assert (page.activity, page.sets_version, page.inbox) == (Activity(77, False), None, pids[::-1][:3])
    below = await stores.readers.reader_page(user, pids[0], 3)  # an empty slice of the inbox: state still there
    assert (below.activity, below.inbox) == (Activity(77, False), [])
    await stores.inboxes.purge_inbox(user, author, now_us())  # no inbox row left: the state stays
    assert (await stores.readers.reader_page(user, None, 3)).activity == Activity(77, False)


async def test_every_change_of_a_readers_sets_gives_them_a_new_version(stores: Stores,
                                                                      new_id: Iterator[int]) -> None:
    user, celeb, gone = next(new_id), next(new_id), next(new_id)
    versions = []
    for change in (stores.readers.add_celebrity([user], celeb, 5), stores.readers.hide_author(user, gone, 1000),
                   stores.readers.add_celebrity([user], celeb, 1),  # an older decision: no change, new version
                   stores.readers.unhide_author(user, gone, 2000), stores.readers.remove_celebrity([user], celeb, 9)):
        await change
        page = await stores.readers.reader_page(user, None, 3)
        sets = await stores.readers.reader_sets(user)
        assert sets.version == page.sets_version is not None
        versions.append(sets.version)
        await asyncio.sleep(0.001)
    assert len(set(versions)) == len(versions)
    assert await stores.readers.reader_sets(user) == ReaderSets(versions[-1], [], frozenset())
    state = await stores.readers.reader_state(user)
    assert (state.celebrities, state.hidden) == ([], frozenset())
