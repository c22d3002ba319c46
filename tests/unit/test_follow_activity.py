"""A new edge carries its follower's last_seen even when a feed read of that follower (UserSeen) runs in the
middle of the follow, and the follow re-reads the follower's activity only when such a read can be refreshing
it (on the in-memory adapter)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from fanout.adapters.memory import MemoryStorage
from fanout.core.events import ChunkTask, FeedUpdate, Followed, UserSeen
from fanout.core.model import Activity
from fanout.core.policy import EDGE_SEEN_REFRESH_MS, SEEN_CLOCK_SKEW_MS, seen_may_be_refreshing
from fanout.metrics import Metrics
from fanout.settings import Settings
from fanout.write.pipeline import Pipeline

SETTINGS = Settings.load(env={}, strategy="hybrid")
T = 1_790_000_000_000
DAY = 86_400_000
AUTHOR, READER = 1, 2


@pytest.mark.parametrize(
    ("activity", "refreshing"),
    [
        (Activity(None, False), True),  # never seen: a read missed would leave the edge without last_seen
        (Activity(T - 2 * 3_600_000, False), False),  # read two hours ago: no read refreshes it before tomorrow
        (Activity(T - DAY + SEEN_CLOCK_SKEW_MS + 1, False), False),
        (Activity(T - DAY + SEEN_CLOCK_SKEW_MS, False), True),  # a read an hour ahead of this clock refreshes it
        (Activity(T - 10 * DAY, False), True),  # back after ten days
        (Activity(T, True), True),  # a rebuild not finished: every read refreshes it
    ],
)
def test_which_activity_a_feed_read_may_be_refreshing(activity: Activity, refreshing: bool) -> None:
    assert EDGE_SEEN_REFRESH_MS == DAY
    assert seen_may_be_refreshing(activity, T) is refreshing


def pipeline(storage: MemoryStorage, seen_concurrently: bool = True) -> Pipeline:
    async def send_task(task: ChunkTask) -> None:
        pass

    async def send_updates(updates: Sequence[FeedUpdate]) -> None:
        pass

    return Pipeline(storage.stores(), SETTINGS, Metrics(), send_task, send_updates, clock_ms=lambda: T,
                    seen_concurrently=seen_concurrently)


def edge_last_seen(storage: MemoryStorage) -> Any:
    return (storage.followers.row(AUTHOR, READER) or {}).get("last_seen")


@pytest.mark.parametrize("last_seen", [None, T - 3 * DAY, T - 10 * DAY])
def test_a_feed_read_in_the_middle_of_a_follow_reaches_the_new_edge(last_seen: int | None) -> None:
    """The read records the reader's activity after the follow read it and lists the followees before the follow
    writes its following row: neither sees the other's write, so only the re-read after the commit brings
    the read's last_seen onto the edge."""
    storage = MemoryStorage(SETTINGS)
    p = pipeline(storage)
    set_followings = storage.set_followings

    async def read_first(changes: Any) -> None:
        await p.handle(UserSeen(event_time=T, user_id=READER))
        await set_followings(changes)

    async def scenario() -> None:
        await storage.set_activity(READER, Activity(last_seen, False))
        storage.set_followings = read_first  # type: ignore[method-assign]
        await p.handle(Followed(event_time=T - 5, follower_id=READER, followee_id=AUTHOR))

    asyncio.run(scenario())
    assert edge_last_seen(storage) == T


@pytest.mark.parametrize(("activity", "reads", "seen_concurrently"), [
    (Activity(None, False), 2, True), (Activity(T - 3_600_000, False), 1, True),
    (Activity(T - 3 * DAY, False), 2, True), (Activity(T, True), 2, True),
    # The bulk import's pipeline: no worker runs beside it, so no feed read can be in flight.
    (Activity(None, False), 1, False), (Activity(T - 3 * DAY, False), 1, False),
])
def test_a_follow_rereads_only_an_activity_a_feed_read_may_be_refreshing(activity: Activity, reads: int,
                                                                         seen_concurrently: bool) -> None:
    storage = MemoryStorage(SETTINGS)
    calls: list[list[int]] = []
    activities = storage.activities

    async def counted(user_ids: Any) -> Any:
        ids = list(user_ids)
        calls.append(ids)
        return await activities(ids)

    async def scenario() -> None:
        await storage.set_activity(READER, activity)
        storage.activities = counted  # type: ignore[method-assign]
        follow = Followed(event_time=T - 5, follower_id=READER, followee_id=AUTHOR)
        await pipeline(storage, seen_concurrently).handle(follow)

    asyncio.run(scenario())
    assert calls == [[READER]] * reads
    assert edge_last_seen(storage) == activity.last_seen
