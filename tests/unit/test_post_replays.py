"""A replayed post keeps the tier stored on its first try, whatever its author's tier is now (on the
in-memory adapter)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from fanout.adapters.memory import MemoryStorage
from fanout.core.events import ChunkTask, FeedUpdate, Followed, PostCreated
from fanout.core.ids import smallest_id_at
from fanout.core.model import Tier
from fanout.metrics import Metrics
from fanout.settings import Settings
from fanout.write.pipeline import Pipeline

SETTINGS = Settings.load(env={}, celebrity_threshold=4, celebrity_demote_ratio=0.5, chunk_size=2, strategy="hybrid")
AUTHOR = 1
T0 = 1_790_000_000_000


def test_a_replay_keeps_the_tier_stored_before_the_crash() -> None:
    """The author crossed the threshold between a post's first try and its replay: the post stored as
    pushed is still pushed (to every active follower, here through chunk tasks), and one stored as pulled
    by an author now pushed reaches no inbox."""
    async def scenario(followers: list[int], tier: Tier) -> tuple[MemoryStorage, PostCreated]:
        storage = MemoryStorage(SETTINGS)
        tasks: list[ChunkTask] = []

        async def send_task(task: ChunkTask) -> None:
            tasks.append(task)

        async def send_updates(updates: Sequence[FeedUpdate]) -> None:
            pass

        p = Pipeline(storage.stores(), SETTINGS, Metrics(), send_task, send_updates)
        for f in followers:
            await p.handle(Followed(event_time=T0 - 1_000, follower_id=f, followee_id=AUTHOR))
        post = PostCreated(event_time=T0, post_id=smallest_id_at(T0), author_id=AUTHOR, body="again")
        await storage.save_post(post.post_id, AUTHOR, post.body, tier)
        await p.handle_group([post, PostCreated(event_time=T0 + 1, post_id=smallest_id_at(T0 + 1), author_id=AUTHOR,
                                                body="new")])
        while tasks:
            await p.handle(tasks.pop(0))
        return storage, post

    celebrity_followers = [11, 12, 13, 14]  # >= the threshold of 4: new posts are pulled
    storage, post = asyncio.run(scenario(celebrity_followers, Tier.PUSH))
    assert all([pid for pid, _ in storage.inboxes.rows(f)] == [post.post_id] for f in celebrity_followers)
    storage, post = asyncio.run(scenario([11, 12], Tier.PULL))  # a pushed author now
    assert [pid for pid, _ in storage.inboxes.rows(11)] == [smallest_id_at(T0 + 1)]
