"""What the worker does with each event: dispatch it to its handler, which fetches its facts, asks
fanout/core/plans.py for a plan and has the executor (fanout/write/executor.py) apply it.

Every handler is idempotent (same keys, same values, or last-writer-wins by event time), so the
at-least-once delivery of Kafka gives effectively-once results. A handler raises when a write failed
after its retries; the caller must then not mark the event done.

Time comes from the events (event_time), never from the worker's clock, except for the lag metric and
write stamps: whether a follower is active is judged against the post's time, so tests control time
with event times.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fanout.core.clock import Clock, wall_ms, wall_us
from fanout.core.events import (
    CelebrityChunk,
    DemotionChunk,
    Event,
    Followed,
    InboxChunk,
    InboxPurge,
    PostCreated,
    PostDeleted,
    SeenChunk,
    Unfollowed,
    UserSeen,
)
from fanout.core.ports import Stores
from fanout.core.rates import DecayedRates
from fanout.metrics import Metrics
from fanout.settings import Settings
from fanout.write.executor import Executor, SendTask, SendUpdates, no_updates
from fanout.write.handlers.graph import GraphHandlers
from fanout.write.handlers.posts import PostHandlers
from fanout.write.handlers.readers import ReaderHandlers

__all__ = ["Pipeline", "SendTask", "SendUpdates", "no_updates"]


class Pipeline:
    def __init__(self, stores: Stores, settings: Settings, metrics: Metrics, send_task: SendTask,
                 send_updates: SendUpdates, clock_ms: Clock = wall_ms, clock_us: Clock = wall_us,
                 seen_concurrently: bool = True) -> None:
        """`seen_concurrently`: see GraphHandlers; False only for the bulk import."""
        self.executor = Executor(stores, settings, metrics, send_task, send_updates, clock_ms, clock_us)
        self.metrics = metrics
        posts, readers = PostHandlers(self.executor), ReaderHandlers(self.executor)
        graph = GraphHandlers(self.executor, seen_concurrently)
        self.graph = graph
        self.post_rates = DecayedRates.of(settings)
        self._posts = posts
        self.handlers: dict[type[Event], Callable[[Any], Awaitable[None]]] = {
            PostCreated: self._post_created,
            InboxChunk: posts.inbox_chunk,
            PostDeleted: posts.post_deleted,
            Followed: lambda e: graph.follow_changed(e.followee_id, e.follower_id, True, e.event_time),
            Unfollowed: lambda e: graph.follow_changed(e.followee_id, e.follower_id, False, e.event_time),
            CelebrityChunk: graph.promoted,
            DemotionChunk: graph.demoted,
            InboxPurge: graph.purge,
            UserSeen: lambda e: readers.user_seen(e.user_id, e.event_time),
            SeenChunk: readers.seen_chunk,
        }

    async def _post_created(self, event: PostCreated) -> None:
        # The author's post rate (φp), here where the author's partition is: a replay counts again, a slight
        # overestimate for a rate that only steers a cost decision.
        self.metrics.author_post_rate.observe(self.post_rates.add(event.author_id, event.event_time))
        await self._posts.post_created(event)

    async def handle(self, event: Event) -> None:
        self.metrics.events_consumed.labels(event.TYPE).inc()
        started = time.perf_counter()
        await self.handlers[type(event)](event)
        self.metrics.event_handling.labels(event.TYPE).observe(time.perf_counter() - started)

    async def handle_group(self, events: Sequence[Event]) -> None:
        """One key's events of a batch, in order. Consecutive follows and unfollows of one author are handled
        as one run (`GraphHandlers.follows_changed`: one read of their edges, one commit), with the same
        outcome as one at a time; any other event on its own."""
        for (kind, author), run in itertools.groupby(events, key=_run_key):
            if kind != "follows":
                for event in run:
                    await self.handle(event)
                continue
            changes = []
            for event in run:
                assert isinstance(event, Followed | Unfollowed)
                self.metrics.events_consumed.labels(event.TYPE).inc()
                changes.append((event.follower_id, isinstance(event, Followed), event.event_time))
            started = time.perf_counter()
            await self.graph.follows_changed(author, changes)
            self.metrics.event_handling.labels("follows").observe(time.perf_counter() - started)


def _run_key(event: Event) -> tuple[str, int]:
    if isinstance(event, Followed | Unfollowed):
        return "follows", event.followee_id
    return "one", id(event)
