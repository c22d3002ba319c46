"""`fanout bench handlers`: the worker's own CPU per event, on the in-memory adapter (no servers).

Follows (each author's run one event long, as most live runs are) and small posts go through the worker's
pipeline, with stores in memory and Kafka sends that return at once, so what is timed is the handlers,
plans and executor themselves: the part of the worker's CPU that is the project's code. Process CPU time,
best of `rounds`.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from typing import Any

from fanout.adapters.memory import MemoryStorage
from fanout.core.events import ChunkTask, FeedUpdate, Followed, PostCreated
from fanout.metrics import Metrics
from fanout.settings import Settings
from fanout.write.pipeline import Pipeline

START = 1_790_000_000_000


async def _round(follows: int, posts: int, seed: int) -> dict[str, float]:
    settings = Settings.load(env={}, celebrity_threshold=10**6)
    storage = MemoryStorage(settings)

    async def send_task(task: ChunkTask) -> None:
        pass

    async def send_updates(updates: Sequence[FeedUpdate]) -> None:
        pass

    pipeline = Pipeline(storage.stores(), settings, Metrics(), send_task, send_updates)
    rng = random.Random(seed)
    authors = max(1, follows // 15)
    follow_events = [Followed(event_time=START + i, follower_id=10**6 + rng.randrange(follows * 2),
                              followee_id=1 + rng.randrange(authors)) for i in range(follows)]
    post_events = [PostCreated(event_time=START + 10**7 + i, post_id=10**12 + i, author_id=1 + rng.randrange(authors),
                               body="x") for i in range(posts)]
    started = time.process_time()
    for f in follow_events:
        await pipeline.handle_group([f])
    followed = time.process_time()
    for p in post_events:
        await pipeline.handle(p)
    done = time.process_time()
    return {"follow_us": (followed - started) / follows * 1e6, "post_us": (done - followed) / posts * 1e6}


def bench(follows: int, posts: int, rounds: int) -> dict[str, Any]:
    results = [asyncio.run(_round(follows, posts, seed)) for seed in range(rounds)]
    return {"follows": follows, "posts": posts, "rounds": rounds,
            "cpu_us_per_follow": round(min(r["follow_us"] for r in results), 1),
            "cpu_us_per_post": round(min(r["post_us"] for r in results), 1)}
