"""Notification grouping (fanout/core/notifications.py) through the notifier's handler on the in-memory store:
the grouping rules one by one, then an oracle over random likes, unlikes, reads and replays."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fanout.adapters.memory_notifications import MemoryNotifications
from fanout.core.events import Event, Followed, Liked, Mentioned, Replied, Unfollowed, Unliked, Unmentioned
from fanout.core.notifications import Group, TargetChange, group_id_of, notices
from fanout.metrics import Metrics
from fanout.settings import Settings
from fanout.write.notifier import Notifier

T = 1_800_000_000_000
AUTHOR, POST = 7, 700
WINDOW_S = 3600


def notifier(run: int = 50, now: int = T) -> tuple[Notifier, MemoryNotifications]:
    store = MemoryNotifications(30 * 86_400, now_ms=lambda: now)
    s = Settings(notification_window_seconds=WINDOW_S, notification_latest_actors=3, notification_run=run)
    return Notifier(store, s, Metrics(), now_ms=lambda: now), store


def like(user: int, at: int = T, post: int = POST, on: bool = True) -> Event:
    return (Liked if on else Unliked)(event_time=at, user_id=user, post_id=post, author_id=AUTHOR)


def handle(n: Notifier, *events: Event) -> None:
    asyncio.run(n.handle_group(list(events)))


def groups(store: MemoryNotifications, owner: int = AUTHOR) -> list[Group]:
    return list(asyncio.run(store.notification_page(owner, None, 100)).groups)


def test_n_likes_make_one_group_with_count_n_naming_the_last_three() -> None:
    n, store = notifier()
    handle(n, *(like(u, T + u) for u in range(11, 21)))
    [g] = groups(store)
    assert (g.kind, g.target, g.actors, g.latest) == ("like", POST, 10, (20, 19, 18))
    assert asyncio.run(store.actors(AUTHOR, "like", POST, 14)) == (10, True)


def test_a_like_again_or_a_replay_is_not_a_second_like() -> None:
    n, store = notifier()
    handle(n, like(1), like(2))
    handle(n, like(1), like(2), like(1, T + 5))
    [g] = groups(store)
    assert g.actors == 2 and asyncio.run(store.actors(AUTHOR, "like", POST, 1)) == (2, True)


def test_an_unlike_removes_its_actor_from_the_group_it_was_counted_in() -> None:
    n, store = notifier()
    handle(n, like(1), like(2), like(3))
    handle(n, like(2, T + 1, on=False), like(9, T + 1, on=False))  # 9 never liked: nothing to undo
    [g] = groups(store)
    assert (g.actors, g.latest) == (2, (3, 1))
    assert asyncio.run(store.actors(AUTHOR, "like", POST, 2)) == (2, False)
    handle(n, like(1, T + 2, on=False), like(3, T + 2, on=False))
    assert groups(store) == []  # a group whose last actor left is gone
    assert asyncio.run(store.unread_count(AUTHOR, 10)) == 0


def test_a_group_read_is_closed_and_the_next_like_opens_a_new_one() -> None:
    n, store = notifier()
    handle(n, like(1), like(2))
    [first] = groups(store)
    assert asyncio.run(store.unread_count(AUTHOR, 10)) == 1
    asyncio.run(store.mark_read(AUTHOR, first.group_id))
    assert asyncio.run(store.unread_count(AUTHOR, 10)) == 0
    handle(n, like(3, T + 10))
    newest, old = groups(store)
    assert (newest.actors, newest.latest, old.actors) == (1, (3,), 2) and newest.group_id > first.group_id
    assert asyncio.run(store.unread_count(AUTHOR, 10)) == 1
    handle(n, like(1, T + 20, on=False))  # leaves the read group, not the new one
    assert [g.actors for g in groups(store)] == [1, 1]


def test_a_lower_read_mark_never_undoes_a_higher_one() -> None:
    _, store = notifier()
    asyncio.run(store.mark_read(AUTHOR, 500))
    asyncio.run(store.mark_read(AUTHOR, 100))
    assert asyncio.run(store.notification_page(AUTHOR, None, 1)).read_up_to == 500


def test_a_group_older_than_the_window_takes_no_new_actors() -> None:
    n, store = notifier()
    handle(n, like(1, T), like(2, T + WINDOW_S * 1000 - 1), like(3, T + WINDOW_S * 1000))
    newest, old = groups(store)
    assert (old.actors, newest.actors, newest.latest) == (2, 1, (3,))


def test_a_run_longer_than_a_batch_is_written_in_parts_and_counts_the_same() -> None:
    n, store = notifier(run=4)
    handle(n, *(like(u, T + u) for u in range(11, 22)), like(15, T + 30, on=False))
    [g] = groups(store)
    assert g.actors == 10 and store.applied == 3


def test_likes_of_several_posts_and_a_self_like_each_where_they_belong() -> None:
    n, store = notifier()
    handle(n, like(1), like(1, post=701), like(AUTHOR))  # the author's own like counts, notifies nobody
    assert sorted((g.target, g.actors) for g in groups(store)) == [(POST, 1), (701, 1)]
    assert asyncio.run(store.actors(AUTHOR, "like", POST, AUTHOR)) == (2, True)


def test_replies_mentions_and_follows_notify_their_owner() -> None:
    n, store = notifier()
    handle(n, Replied(event_time=T, user_id=3, post_id=801, parent_id=POST, author_id=AUTHOR),
           Mentioned(event_time=T, user_id=3, post_id=801, mentioned_ids=(AUTHOR, 3, 8)),  # not oneself
           Followed(event_time=T, follower_id=3, followee_id=AUTHOR),
           Followed(event_time=T, follower_id=4, followee_id=AUTHOR),
           Unfollowed(event_time=T + 1, follower_id=4, followee_id=AUTHOR))
    assert sorted((g.kind, g.target, g.actors, g.latest) for g in groups(store)) == [
        ("follow", AUTHOR, 1, (3,)), ("mention", 801, 1, (3,)), ("reply", POST, 1, (3,))]
    assert [(g.kind, g.actors) for g in groups(store, 8)] == [("mention", 1)]
    assert groups(store, 3) == []


def test_a_deleted_post_withdraws_its_mentions_exactly_even_replayed() -> None:
    n, store = notifier()
    mentioned = Mentioned(event_time=T, user_id=3, post_id=801, mentioned_ids=(AUTHOR, 8))
    also = Mentioned(event_time=T, user_id=4, post_id=802, mentioned_ids=(8,))
    withdrawn = Unmentioned(event_time=T + 5, user_id=3, post_id=801, mentioned_ids=(AUTHOR, 8))
    handle(n, mentioned, also, withdrawn, mentioned, withdrawn)  # a replay of both after the first pair
    assert groups(store) == []
    assert [(g.kind, g.target, g.actors, g.latest) for g in groups(store, 8)] == [("mention", 802, 1, (4,))]
    assert asyncio.run(store.actors(8, "mention", 801, 3)) == (0, False)


def test_group_ids_are_the_same_on_a_replay_and_sort_by_time() -> None:
    assert group_id_of(T, "like", POST) == group_id_of(T, "like", POST)
    assert group_id_of(T + 1, "like", 1) > group_id_of(T, "like", 2**40)
    assert group_id_of(T, "like", POST) < 2**53  # exact in every JSON client
    assert notices(Liked(event_time=T, user_id=1, post_id=POST, author_id=AUTHOR))[0].subject == (AUTHOR, "like", POST)


actions = st.lists(st.tuples(st.sampled_from(["like", "unlike", "read", "replay"]), st.integers(1, 6),
                             st.sampled_from([POST, 701])), max_size=60)


@settings(max_examples=200, deadline=None)
@given(actions)
def test_counts_stay_exact_through_any_likes_unlikes_reads_and_replays(steps: list[tuple[str, int, int]]) -> None:
    """The oracle: each post's likers as a set. After any sequence, each post's count is its likers', the groups
    of a post hold every liker but the author exactly once, and a read closes every group."""
    n, store = notifier()
    likers: dict[int, set[int]] = {POST: set(), 701: set()}
    sent: list[Event] = []
    for i, (action, user, post) in enumerate(steps):
        at = T + i * 60_000
        if action == "read":
            page = groups(store)
            if page:
                asyncio.run(store.mark_read(AUTHOR, page[0].group_id))
            continue
        if action == "replay":
            if sent:
                handle(n, *sent[-3:])
            continue
        event = like(user, at, post, on=action == "like")
        (likers[post].add if action == "like" else likers[post].discard)(user)
        sent.append(event)
        handle(n, event)
    for post, users in likers.items():
        assert asyncio.run(store.actors(AUTHOR, "like", post, 0))[0] == len(users)
        counted = [g for g in groups(store) if g.target == post]
        assert sum(g.actors for g in counted) == len(users - {AUTHOR})
        assert all(set(g.latest) <= users and 0 < len(g.latest) <= 3 for g in counted)


class FailingOnce(MemoryNotifications):
    """Fails the next `apply` after `fail_next` is set, having written it or not (`lands`)."""

    fail_next = False
    lands = False

    async def apply(self, owner: int, kind: str, target: int, change: TargetChange) -> None:
        if self.fail_next:
            self.fail_next = False
            if self.lands:
                await super().apply(owner, kind, target, change)
            raise TimeoutError("the write timed out")
        await super().apply(owner, kind, target, change)


def stored(store: MemoryNotifications) -> tuple[Any, ...]:
    return store.members, store.totals, {s: g for s, g in store.open.items() if g}, store.groups


USERS = [1, 2, 3, 4, AUTHOR]  # the author's own like too
some_likes = st.lists(st.tuples(st.booleans(), st.sampled_from(USERS), st.sampled_from([POST, 701])), min_size=1,
                      max_size=5)
cached_steps = st.lists(st.one_of(
    st.tuples(st.just("events"), some_likes),
    st.tuples(st.just("read"), st.none()),
    st.tuples(st.just("advance"), st.sampled_from([60_000, 400_000, 3_600_000, 86_400_000])),
    st.tuples(st.just("rebalance"), st.none()),
    st.tuples(st.sampled_from(["fail", "fail-landed"]), st.sampled_from([POST, 701]))), max_size=40)


@settings(max_examples=300, deadline=None)
@given(cached_steps, st.sampled_from([1, 2, 50]))
def test_targets_known_in_memory_give_the_writes_that_reading_the_store_gives(
        steps: list[tuple[str, Any]], run: int) -> None:
    """The notifier that decides runs from memory (fanout/write/known_targets.py) and one that reads every
    state from the store write the same, on one clock, through likes and unlikes (the author's own too) in
    runs split into parts, reads, windows closing, groups expiring, rebalances and writes that fail (landed
    or not): memory is a hint that is never wrong."""
    clock = [T]
    stores = [FailingOnce(86_400, now_ms=lambda: clock[0]) for _ in range(2)]
    notifiers = [Notifier(store, Settings(notification_window_seconds=600, notification_latest_actors=2,
                                          notification_run=run, notification_retention_days=1,
                                          notification_known_actors=known), Metrics(), now_ms=lambda: clock[0])
                 for store, known in zip(stores, (1_000_000, 0), strict=True)]
    for i, (action, arg) in enumerate(steps):
        if action == "events":
            events = [like(user, clock[0] + j, post, on) for j, (on, user, post) in enumerate(arg)]
            clock[0] += 10
            for n in notifiers:
                asyncio.run(n.handle_group(events))
        elif action == "advance":
            clock[0] += arg
        for n, store in zip(notifiers, stores, strict=True):
            if action == "read" and (page := groups(store)):
                asyncio.run(store.mark_read(AUTHOR, page[0].group_id))
            elif action == "rebalance":
                n.known.clear()
            elif action.startswith("fail"):
                store.fail_next, store.lands = True, action == "fail-landed"
                with pytest.raises(TimeoutError):
                    handle(n, like(100 + i, clock[0], arg))  # a new liker: a write to fail
        assert stored(stores[0]) == stored(stores[1]), (i, action)
    assert len(notifiers[1].known) == 0


class SlowLikes(MemoryNotifications):
    """Likes take a moment to write; replies fail."""

    async def apply(self, owner: int, kind: str, target: int, change: TargetChange) -> None:
        if kind == "reply":
            raise TimeoutError("the write timed out")
        await asyncio.sleep(0.05)
        await super().apply(owner, kind, target, change)


def test_a_failing_target_is_raised_only_once_every_target_of_the_group_has_ended() -> None:
    """The runner handles a failed group's events again one by one: a target still being written then would
    run twice at once."""
    store = SlowLikes(30 * 86_400, now_ms=lambda: T)
    n = Notifier(store, Settings(), Metrics(), now_ms=lambda: T)
    events = [like(2), Replied(event_time=T, user_id=3, post_id=9001, author_id=AUTHOR, parent_id=POST), like(4)]
    with pytest.raises(TimeoutError):
        handle(n, *events)
    assert asyncio.run(store.actors(AUTHOR, "like", POST, 0)) == (2, False)


def test_a_new_posts_likes_after_the_first_are_decided_without_reading_the_store() -> None:
    n, store = notifier()
    for user in range(11, 21):
        handle(n, like(user, T + user))
    runs = {s.labels["state"]: s.value for s in n.metrics.notification_runs.collect()[0].samples
            if s.name.endswith("_total")}
    assert runs == {"store": 1.0, "memory": 9.0}
    assert asyncio.run(store.actors(AUTHOR, "like", POST, 0)) == (10, False)
    assert [(g.actors, g.latest) for g in groups(store)] == [(10, (20, 19, 18))]


def test_a_target_first_seen_with_actors_is_read_from_the_store_every_time() -> None:
    n, store = notifier()
    handle(n, like(1))
    n.known.clear()  # as after a restart: the post has a like this notifier did not see
    handle(n, like(2, T + 1))
    handle(n, like(3, T + 2))
    runs = {s.labels["state"]: s.value for s in n.metrics.notification_runs.collect()[0].samples
            if s.name.endswith("_total")}
    assert runs == {"store": 3.0}
    assert asyncio.run(store.actors(AUTHOR, "like", POST, 0)) == (3, False)
