"""Posts: store and deliver a new post (push inline, in chunk tasks, or not at all), and deletes."""

from __future__ import annotations

import asyncio
import logging

from fanout.core.events import InboxChunk, InvalidEvent, PostCreated, PostDeleted, PostRemoved, PostStored
from fanout.core.model import Strategy
from fanout.core.policy import may_delete, plan_fanout
from fanout.core.ports import bulk_work
from fanout.write.handlers.delivery import Delivery

log = logging.getLogger(__name__)


class PostHandlers:
    def __init__(self, delivery: Delivery) -> None:
        self.d = delivery

    async def post_created(self, e: PostCreated) -> None:
        d, s = self.d, self.d.settings
        # The author's stats come from the worker's cache (fanout/adapters/author_cache.py). The stored tier
        # is the replay check; the audience is read at the same time whenever the post will most likely be
        # pushed (a replayed post stored as pulled is the rare case that reads it for nothing).
        stats = await d.stores.graph.author_stats(e.author_id)
        likely = plan_fanout(stats.is_celebrity, stats.follower_count, s.chunk_size, None, s.strategy)
        # Only the hybrid skips inactive followers; push-everything is the baseline it is measured against.
        seen_since = e.event_time - s.active_ms if s.strategy is Strategy.HYBRID else None
        existing, audience = await asyncio.gather(
            d.stores.posts.stored_post(e.post_id),
            d.active_followers(e.author_id, seen_since=seen_since, expected=stats.follower_count)
            if likely.chunks else _nobody())
        if existing is not None and existing.author_id != e.author_id:
            # Anything holding the events topic's credentials could otherwise write over another's post
            # (the same id, the same write timestamp). Parked with the reason, nothing written.
            raise InvalidEvent("post_id_taken", f"post {e.post_id} is user {existing.author_id}'s, not user "
                                                f"{e.author_id}'s")
        plan = plan_fanout(stats.is_celebrity, stats.follower_count, s.chunk_size,
                           existing.tier if existing else None, s.strategy)
        d.metrics.posts_by_tier.labels(plan.tier.value).inc()
        save = d.stores.posts.save_post(e.post_id, e.author_id, e.body, plan.tier)
        # Read services learn of the post once it is stored (its body, and for a pulled post its place on the
        # author's cached head), and before any PostDelivered of it, which live streams serve from that body.
        stored = PostStored(event_time=e.event_time, post_id=e.post_id, author_id=e.author_id,
                            tier=plan.tier.value, body=e.body)
        if plan.chunks == 0:
            await save
            await d.send_update(stored)
            return
        followers = audience if likely.chunks else await d.active_followers(e.author_id, seen_since=seen_since)
        if len(followers) <= s.chunk_size:
            # The post and its inbox rows in the same flush (often the same batches): a read that finds a
            # pushed id before its post skips it (fanout/read/feed.py), so nothing waits for the post first.
            await asyncio.gather(save, d.push(e.post_id, e.author_id, followers, e.event_time, stats.follower_count))
            # Both updates in one send (one envelope, PostStored first): one wait for Kafka, not two.
            await d.delivered(e.post_id, e.author_id, followers, e.event_time, after=[stored])
            return
        await save
        await d.send_update(stored)
        # A big fan-out becomes chunk tasks on their own topic: they spread over workers, and a crash
        # replays one chunk, not the whole fan-out. Sent (and acknowledged) before this event is done.
        slices = d.slices(followers)
        await asyncio.gather(*(
            d.send_task(InboxChunk(event_time=e.event_time, post_id=e.post_id, author_id=e.author_id,
                                   follower_ids=chunk, chunk=n, chunks=len(slices), followers=stats.follower_count))
            for n, chunk in enumerate(slices)
        ))

    async def inbox_chunk(self, task: InboxChunk) -> None:
        # Bulk: the rows of small posts handled meanwhile go first (fanout/core/ports.py bulk_work).
        with bulk_work():
            await self.d.push(task.post_id, task.author_id, task.follower_ids, task.event_time, task.followers)
        await self.d.delivered(task.post_id, task.author_id, task.follower_ids, task.event_time)
        self.d.metrics.fanout_chunks.inc()

    async def post_deleted(self, e: PostDeleted) -> None:
        stored = (await self.d.stores.posts.posts([e.post_id])).get(e.post_id)
        if not may_delete(stored, e.author_id):
            log.warning("refused a delete of post %d claimed by user %d, not its author", e.post_id, e.author_id)
            self.d.metrics.deletes_refused.inc()
            return
        # Reads filter deleted posts, pushed or pulled, so no inbox is touched (no tombstones).
        await self.d.stores.posts.mark_deleted(e.post_id, e.author_id, e.event_time)
        self.d.metrics.deletes_applied.inc()
        await self.d.send_update(PostRemoved(event_time=e.event_time, post_id=e.post_id, author_id=e.author_id))


async def _nobody() -> list[int]:
    return []
