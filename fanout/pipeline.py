"""What the worker does with each event: fetch facts, ask the policy, write through the store.

Every handler is idempotent (same keys, same values, or last-writer-wins by event time), so the
at-least-once delivery of Kafka gives effectively-once results. A handler raises when a write failed
after its retries; the caller must then not mark the event done.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

from fanout.events import (
    CelebrityChunk,
    ChunkTask,
    Event,
    Followed,
    InboxChunk,
    PostCreated,
    PostDeleted,
    Unfollowed,
)
from fanout.metrics import Metrics
from fanout.policy import is_celebrity_after, plan_fanout
from fanout.settings import Settings
from fanout.store import AuthorStats, Edge, Store

SendTask = Callable[[ChunkTask], Awaitable[None]]


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class Pipeline:
    def __init__(self, store: Store, settings: Settings, metrics: Metrics, send_task: SendTask,
                 clock_ms: Callable[[], int] = wall_ms) -> None:
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self.send_task = send_task  # must return only once Kafka acknowledged the task
        self.clock_ms = clock_ms

    async def handle(self, event: Event) -> None:
        self.metrics.events_consumed.labels(event.TYPE).inc()
        if isinstance(event, PostCreated):
            await self.post_created(event)
        elif isinstance(event, InboxChunk):
            await self.push(event.post_id, event.author_id, event.follower_ids, event.event_time)
            self.metrics.fanout_chunks.inc()
        elif isinstance(event, PostDeleted):
            await self.store.mark_deleted(event.post_id, event.author_id, event.event_time)
        elif isinstance(event, Followed | Unfollowed):
            await self.follow_changed(event.followee_id, event.follower_id, isinstance(event, Followed),
                                      event.event_time)
        elif isinstance(event, CelebrityChunk):
            await self.store.add_celebrity(event.follower_ids, event.author_id, event.event_time,
                                           self.settings.write_window)
        else:  # pragma: no cover - decode() only builds the types above
            raise TypeError(f"no handler for {event.TYPE}")

    # --- posts -----------------------------------------------------------------------------------

    async def post_created(self, e: PostCreated) -> None:
        stats, stored_tier = await asyncio.gather(self.store.author_stats(e.author_id),
                                                  self.store.stored_tier(e.post_id))
        plan = plan_fanout(stats.is_celebrity, stats.follower_count, self.settings.chunk_size, stored_tier)
        await self.store.save_post(e.post_id, e.author_id, e.body, plan.tier)
        self.metrics.posts_by_tier.labels(plan.tier.value).inc()
        if plan.chunks == 0:
            return
        followers = await self.active_followers(e.author_id)
        if len(followers) <= self.settings.chunk_size:
            await self.push(e.post_id, e.author_id, followers, e.event_time)
            return
        # A big fan-out becomes chunk tasks on their own topic: they spread over workers, and a crash
        # replays one chunk, not the whole fan-out. Sent (and acknowledged) before this event is done.
        size = self.settings.chunk_size
        slices = [tuple(followers[i : i + size]) for i in range(0, len(followers), size)]
        await asyncio.gather(*(
            self.send_task(InboxChunk(event_time=e.event_time, post_id=e.post_id, author_id=e.author_id,
                                      follower_ids=s, chunk=n, chunks=len(slices)))
            for n, s in enumerate(slices)
        ))

    async def push(self, post_id: int, author_id: int, followers: Sequence[int], event_time: int) -> None:
        if not followers:
            return
        started = time.perf_counter()
        rows = await self.store.push(post_id, author_id, followers, self.settings.inbox_ttl_seconds,
                                     self.settings.write_window)
        self.metrics.inbox_rows_written.inc(rows)
        self.metrics.fanout_duration.observe(time.perf_counter() - started)
        self.metrics.end_to_end_lag.observe(max(0.0, (self.clock_ms() - event_time) / 1000))

    async def active_followers(self, author_id: int) -> list[int]:
        followers: list[int] = []
        after: int | None = 0
        while after is not None:
            page, after = await self.store.followers_page(author_id, after, self.settings.chunk_size)
            followers.extend(page)
        return followers

    # --- follow graph ----------------------------------------------------------------------------

    async def follow_changed(self, author_id: int, follower_id: int, following: bool, event_time: int) -> None:
        """Apply a follow or unfollow; a stale or repeated one (not newer than the edge) changes nothing."""
        stats, edge = await asyncio.gather(self.store.author_stats(author_id),
                                           self.store.edge(author_id, follower_id))
        fresh = edge is None or event_time > edge.changed_at
        count, celebrity = stats.follower_count, stats.is_celebrity
        if fresh:
            was_following = edge.following if edge else False
            count += int(following) - int(was_following)
            celebrity = is_celebrity_after(stats.is_celebrity, count, self.settings.celebrity_threshold,
                                           self.settings.celebrity_demote_ratio)
        # The follower's side first; these writes are last-writer-wins by event time, so redoing them on
        # a replay is harmless and a stale event cannot override a newer one.
        follower_side: list[Awaitable[object]] = [
            self.store.set_following(follower_id, author_id, following, event_time)
        ]
        if not following:
            follower_side.append(self.store.remove_celebrity(follower_id, author_id, event_time))
        elif celebrity:
            follower_side.append(self.store.add_celebrity([follower_id], author_id, event_time, 1))
        await asyncio.gather(*follower_side)
        if not fresh:
            return
        if celebrity and not stats.is_celebrity:
            await self.promote(author_id, event_time)
        # The commit point: the edge and the count change together, in one single-partition batch.
        await self.store.set_edge(author_id, follower_id, Edge(following, event_time), AuthorStats(count, celebrity))

    async def promote(self, author_id: int, event_time: int) -> None:
        """The author just became a celebrity: its followers must merge its timeline from now on."""
        followers = await self.active_followers(author_id)
        size = self.settings.chunk_size
        await asyncio.gather(*(
            self.send_task(CelebrityChunk(event_time=event_time, author_id=author_id,
                                          follower_ids=tuple(followers[i : i + size])))
            for i in range(0, len(followers), size)
        ))
