"""The NotificationStore contract (fanout/core/ports.py), on the in-memory adapter and real Cassandra alike."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator

from fanout.core.clock import wall_ms
from fanout.core.notifications import Grouping, Notice, apply
from fanout.core.ports import NotificationStore

GROUPING = Grouping(window_ms=3_600_000, latest=3)


async def run(store: NotificationStore, *notices: Notice) -> None:
    owner, kind, target = notices[0].subject
    state = await store.target_state(owner, kind, target, {n.actor for n in notices})
    await store.apply(owner, kind, target, apply(state, notices, GROUPING))


def likes(owner: int, post: int, *actors: int, joins: bool = True, at: int = 0) -> list[Notice]:
    at = at or wall_ms()
    return [Notice(owner, "like", post, a, joins, at + i) for i, a in enumerate(actors)]


async def test_a_run_is_stored_and_read_back_as_its_state(notifications: NotificationStore,
                                                          new_id: Iterator[int]) -> None:
    owner, post = next(new_id), next(new_id)
    assert (await notifications.target_state(owner, "like", post, [1])).total == 0
    await run(notifications, *likes(owner, post, 1, 2, 3, 4))
    state = await notifications.target_state(owner, "like", post, [1, 9])
    assert state.total == 4 and set(state.members) == {1}
    assert state.open_group is not None and (state.open_group.actors, state.open_group.latest) == (4, (4, 3, 2))
    assert state.groups == {state.open_group.group_id: state.open_group}
    assert await notifications.actors(owner, "like", post, 2) == (4, True)
    assert await notifications.actors(owner, "like", post, 9) == (4, False)
    assert await notifications.actors(owner, "like", next(new_id), 9) == (0, False)


async def test_members_leave_and_an_emptied_group_is_deleted(notifications: NotificationStore,
                                                             new_id: Iterator[int]) -> None:
    owner, post = next(new_id), next(new_id)
    await run(notifications, *likes(owner, post, 1, 2))
    await run(notifications, *likes(owner, post, 1, joins=False))
    page = await notifications.notification_page(owner, None, 10)
    assert [(g.actors, g.latest) for g in page.groups] == [(1, (2,))]
    await run(notifications, *likes(owner, post, 2, joins=False))
    assert (await notifications.notification_page(owner, None, 10)).groups == ()
    state = await notifications.target_state(owner, "like", post, [1, 2])
    assert (state.total, dict(state.members), state.open_group) == (0, {}, None)


async def test_pages_newest_first_with_a_cursor_and_the_unread_count(notifications: NotificationStore,
                                                                     new_id: Iterator[int]) -> None:
    owner = next(new_id)
    posts = [next(new_id) for _ in range(5)]
    now = wall_ms()
    for i, post in enumerate(posts):
        await run(notifications, *likes(owner, post, 1, at=now + i * 10))
    first = await notifications.notification_page(owner, None, 3)
    assert [g.target for g in first.groups] == posts[::-1][:3] and first.read_up_to == 0
    rest = await notifications.notification_page(owner, first.groups[-1].group_id, 3)
    assert [g.target for g in rest.groups] == posts[::-1][3:]
    assert await notifications.unread_count(owner, 100) == 5
    assert await notifications.unread_count(owner, 2) == 2
    assert await notifications.read_mark(owner) == 0
    await notifications.mark_read(owner, first.groups[1].group_id)
    await notifications.mark_read(owner, rest.groups[0].group_id)  # lower: never undoes the higher mark
    assert await notifications.read_mark(owner) == first.groups[1].group_id
    assert await notifications.unread_count(owner, 100) == 1
    assert (await notifications.notification_page(owner, None, 1)).read_up_to == first.groups[1].group_id
    assert (await notifications.notification_page(owner, first.groups[0].group_id, 1)).read_up_to == \
        first.groups[1].group_id


async def test_a_group_past_its_retention_is_gone(notifications: NotificationStore, new_id: Iterator[int]) -> None:
    owner, post = next(new_id), next(new_id)
    long_ago = wall_ms() - 31 * 86_400_000  # opened before the 30 days kept
    await run(notifications, *likes(owner, post, 1, at=long_ago))
    assert (await notifications.notification_page(owner, None, 10)).groups == ()
    state = await notifications.target_state(owner, "like", post, [1])
    assert state.total == 1 and state.open_group is None and state.groups == {}  # the like itself is kept


async def test_many_owners_and_targets_do_not_mix(notifications: NotificationStore, new_id: Iterator[int]) -> None:
    owners = [next(new_id) for _ in range(3)]
    for owner, post in itertools.product(owners, (1, 2)):
        await run(notifications, *likes(owner, post, owner + post))
    for owner in owners:
        page = await notifications.notification_page(owner, None, 10)
        assert sorted((g.target, g.latest) for g in page.groups) == [(1, (owner + 1,)), (2, (owner + 2,))]


async def test_a_member_of_a_read_group_leaves_that_group_not_the_open_one(notifications: NotificationStore,
                                                                          new_id: Iterator[int]) -> None:
    owner, post = next(new_id), next(new_id)
    now = wall_ms()
    await run(notifications, *likes(owner, post, 1, 2, at=now))
    [read] = (await notifications.notification_page(owner, None, 10)).groups
    await notifications.mark_read(owner, read.group_id)
    await run(notifications, *likes(owner, post, 3, at=now + 10))
    await run(notifications, *likes(owner, post, 1, joins=False, at=now + 20))
    newest, old = (await notifications.notification_page(owner, None, 10)).groups
    assert (newest.actors, newest.latest, old.actors, old.latest) == (1, (3,), 1, (2,))
    state = await notifications.target_state(owner, "like", post, [2, 3])
    assert state.total == 2 and state.open_group == newest and set(state.groups) == {newest.group_id, old.group_id}


async def test_many_runs_at_once_all_land_whole(notifications: NotificationStore, new_id: Iterator[int]) -> None:
    """More runs at once than the Cassandra adapter keeps batches in flight: the rest wait, are coalesced
    into the next batches, and each lands whole."""
    owners = [next(new_id) for _ in range(3)]
    targets = [(owner, next(new_id), n) for owner in owners for n in range(1, 21)]
    await asyncio.gather(*(run(notifications, *likes(owner, post, *range(1, n + 1))) for owner, post, n in targets))
    for owner, post, n in targets:
        state = await notifications.target_state(owner, "like", post, [n, n + 1])
        assert state.total == n and set(state.members) == {n}
        assert state.open_group is not None and state.open_group.actors == n
    for owner in owners:
        page = await notifications.notification_page(owner, None, 50)
        assert sorted(g.actors for g in page.groups) == list(range(1, 21))
