"""What the worker does with each event: fetch facts, ask the policy, write through the store.

Every handler is idempotent (same keys, same values, or last-writer-wins by event time), so the
at-least-once delivery of Kafka gives effectively-once results. A handler raises when a write failed
after its retries; the caller must then not mark the event done.

Time comes from the events (event_time), never from the worker's clock, except for the lag metric:
whether a follower is active is judged against the post's time, so tests control time with event times.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

from fanout.events import (
    CelebrityChunk,
    ChunkTask,
    DemotionChunk,
    Event,
    Followed,
    InboxChunk,
    InboxPurge,
    PostCreated,
    PostDeleted,
    Unfollowed,
    UserSeen,
)
from fanout.metrics import Metrics
from fanout.policy import follower_bucket, is_celebrity_after, plan_fanout
from fanout.settings import Settings
from fanout.store import Activity, AuthorStats, Edge, Store

SendTask = Callable[[ChunkTask], Awaitable[None]]
EDGE_SEEN_REFRESH_MS = 86_400_000  # edges carry last_seen to a day's precision: enough for a 7-day rule
REGEN_CONCURRENCY = 8  # followees' timelines copied at once while rebuilding a returning user's inbox


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
        self.hybrid = settings.strategy == "hybrid"
        self.pushes = settings.strategy != "pull"  # pull-only writes no inbox row at all

    async def handle(self, event: Event) -> None:
        self.metrics.events_consumed.labels(event.TYPE).inc()
        if isinstance(event, PostCreated):
            await self.post_created(event)
        elif isinstance(event, InboxChunk):
            await self.push(event.post_id, event.author_id, event.follower_ids, event.event_time, event.followers)
            self.metrics.fanout_chunks.inc()
        elif isinstance(event, PostDeleted):
            await self.store.mark_deleted(event.post_id, event.author_id, event.event_time)
            self.metrics.deletes_applied.inc()
        elif isinstance(event, Followed | Unfollowed):
            await self.follow_changed(event.followee_id, event.follower_id, isinstance(event, Followed),
                                      event.event_time)
        elif isinstance(event, CelebrityChunk):
            await self.store.add_celebrity(event.follower_ids, event.author_id, event.author_version,
                                           self.settings.write_window)
        elif isinstance(event, DemotionChunk):
            await self.demoted(event)
        elif isinstance(event, InboxPurge):
            await self.purge(event)
        elif isinstance(event, UserSeen):
            await self.user_seen(event.user_id, event.event_time)
        else:  # pragma: no cover - decode() only builds the types above
            raise TypeError(f"no handler for {event.TYPE}")

    # --- posts -----------------------------------------------------------------------------------

    async def post_created(self, e: PostCreated) -> None:
        stats, stored_tier = await asyncio.gather(self.store.author_stats(e.author_id),
                                                  self.store.stored_tier(e.post_id))
        plan = plan_fanout(stats.is_celebrity, stats.follower_count, self.settings.chunk_size, stored_tier,
                           self.settings.strategy)
        await self.store.save_post(e.post_id, e.author_id, e.body, plan.tier)
        self.metrics.posts_by_tier.labels(plan.tier.value).inc()
        if plan.chunks == 0:
            return
        # Only the hybrid skips inactive followers; push-everything is the baseline it is measured against.
        seen_since = e.event_time - self.settings.active_ms if self.hybrid else None
        followers = await self.active_followers(e.author_id, seen_since=seen_since)
        if len(followers) <= self.settings.chunk_size:
            await self.push(e.post_id, e.author_id, followers, e.event_time, stats.follower_count)
            return
        # A big fan-out becomes chunk tasks on their own topic: they spread over workers, and a crash
        # replays one chunk, not the whole fan-out. Sent (and acknowledged) before this event is done.
        slices = self.slices(followers)
        await asyncio.gather(*(
            self.send_task(InboxChunk(event_time=e.event_time, post_id=e.post_id, author_id=e.author_id,
                                      follower_ids=s, chunk=n, chunks=len(slices), followers=stats.follower_count))
            for n, s in enumerate(slices)
        ))

    async def push(self, post_id: int, author_id: int, followers: Sequence[int], event_time: int,
                   audience: int) -> None:
        if not followers:
            return
        started = time.perf_counter()
        rows = await self.store.push(post_id, author_id, followers, self.settings.inbox_ttl_seconds,
                                     self.settings.write_window)
        self.metrics.inbox_rows_written.inc(rows)
        self.metrics.fanout_duration.observe(time.perf_counter() - started)
        self.metrics.end_to_end_lag.labels(follower_bucket(audience)).observe(
            max(0.0, (self.clock_ms() - event_time) / 1000))

    async def active_followers(self, author_id: int, seen_since: int | None = None) -> list[int]:
        followers: list[int] = []
        after: int | None = 0
        while after is not None:
            page, skipped, after = await self.store.followers_page(author_id, after, self.settings.chunk_size,
                                                                   seen_since)
            followers.extend(page)
            self.metrics.inactive_skipped.inc(skipped)
        return followers

    def slices(self, users: list[int]) -> list[tuple[int, ...]]:
        size = self.settings.chunk_size
        return [tuple(users[i : i + size]) for i in range(0, len(users), size)]

    async def backfill(self, user_ids: Sequence[int], author_id: int, until_post_id: int | None = None) -> int:
        """Copy the author's latest posts (FANOUT_FOLLOW_BACKFILL), up to `until_post_id`, into these
        users' inboxes."""
        before = until_post_id + 1 if until_post_id else None
        posts = await self.store.timeline_head(author_id, before, self.settings.follow_backfill)
        rows = await self.store.push_rows(((u, p) for p in posts for u in user_ids), author_id,
                                          self.settings.inbox_ttl_seconds, self.settings.write_window)
        self.metrics.backfilled_rows.inc(rows)
        return rows

    # --- follow graph ----------------------------------------------------------------------------

    async def follow_changed(self, author_id: int, follower_id: int, following: bool, event_time: int) -> None:
        """Apply a follow or unfollow; a stale or repeated one (not newer than the edge) changes nothing."""
        stats, edge, activity = await asyncio.gather(self.store.author_stats(author_id),
                                                     self.store.edge(author_id, follower_id),
                                                     self.store.activity(follower_id))
        fresh = edge is None or event_time > edge.changed_at
        count, celebrity = stats.follower_count, stats.is_celebrity
        # Every fresh change gets the next version of the author (never below the event's time, so the
        # values stay comparable with the event-time timestamps of other tables' rows).
        version = max(stats.version + 1, event_time * 1000)
        if fresh:
            was_following = edge.following if edge else False
            count += int(following) - int(was_following)
            celebrity = self.hybrid and is_celebrity_after(stats.is_celebrity, count, self.settings.celebrity_threshold,
                                                           self.settings.celebrity_demote_ratio)
        # The follower's side first; these writes are last-writer-wins by event time, so redoing them on
        # a replay is harmless and a stale event cannot override a newer one.
        follower_side: list[Awaitable[object]] = [
            self.store.set_following(follower_id, author_id, following, event_time)
        ]
        if following:
            follower_side.append(self.store.unhide_author(follower_id, author_id, event_time))
            if celebrity and fresh:
                follower_side.append(self.store.add_celebrity([follower_id], author_id, version, 1))
        else:
            if fresh:  # a stale unfollow must not undo the set row a newer decision wrote
                follower_side.append(self.store.remove_celebrity([follower_id], author_id, version, 1))
            # Hidden at read at once; the purge below removes the rows in the background.
            follower_side.append(self.store.hide_author(follower_id, author_id, event_time,
                                                        self.settings.inbox_ttl_seconds))
        await asyncio.gather(*follower_side)
        if not fresh:
            return
        if following and not celebrity and self.pushes:
            await self.backfill([follower_id], author_id)
        if not following and edge is not None and edge.following and self.pushes:
            # Stamped with the time of this decision: inbox rows are written at the writer's clock, so rows
            # pushed before now are purged and rows of a later follow (backfilled after now) survive.
            await self.send_task(InboxPurge(event_time=event_time, user_id=follower_id, author_id=author_id,
                                            as_of_us=self.clock_ms() * 1000))
        if celebrity != stats.is_celebrity:
            # The event's own follower is handled above; its edge is not written yet, so leave it out.
            await self.tier_switched(author_id, celebrity, event_time, version, leave_out=follower_id)
        # The commit point: the edge, the count and the version change together, in one single-partition
        # batch. A crash before it replays this event as fresh, with the same version.
        await self.store.set_edge(author_id, follower_id, Edge(following, event_time),
                                  AuthorStats(count, celebrity, version), last_seen=activity.last_seen)
        if following:
            # A UserSeen of the follower may have run meanwhile (it is keyed by the follower, so another
            # batch group or worker) and listed the followees before this edge existed. It records the
            # activity before listing; we re-read it after writing: one of the two sees the other.
            latest = await self.store.activity(follower_id)
            if latest.last_seen != activity.last_seen and latest.last_seen is not None:
                await self.store.set_edges_seen(follower_id, [author_id], latest.last_seen, 1)

    async def tier_switched(self, author_id: int, celebrity: bool, event_time: int, version: int,
                            leave_out: int) -> None:
        """The author crossed the threshold: its followers' celebrity sets change, in the background."""
        self.metrics.tier_switches.labels("to_pull" if celebrity else "to_push").inc()
        followers = [f for f in await self.active_followers(author_id) if f != leave_out]
        tasks: list[ChunkTask]
        if celebrity:
            tasks = [CelebrityChunk(event_time=event_time, author_id=author_id, follower_ids=s, author_version=version)
                     for s in self.slices(followers)]
        else:
            # Posts up to the newest one now were pulled; later ones will be pushed.
            newest = await self.store.timeline_head(author_id, None, 1)
            tasks = [DemotionChunk(event_time=event_time, author_id=author_id, follower_ids=s, author_version=version,
                                   until_post_id=newest[0] if newest else 0)
                     for s in self.slices(followers)]
        await asyncio.gather(*(self.send_task(t) for t in tasks))

    async def demoted(self, task: DemotionChunk) -> None:
        """Backfill first, then leave the celebrity sets: at every moment the author's recent posts are
        reachable through the inbox or the celebrity timeline (reads dedupe)."""
        await self.backfill(task.follower_ids, task.author_id, until_post_id=task.until_post_id)
        await self.store.remove_celebrity(task.follower_ids, task.author_id, task.author_version,
                                          self.settings.write_window)

    async def purge(self, task: InboxPurge) -> None:
        if task.author_id not in await self.store.hidden_authors(task.user_id):
            return  # followed again meanwhile: its backfilled rows must stay
        rows = await self.store.purge_inbox(task.user_id, task.author_id, task.as_of_us, self.settings.write_window)
        self.metrics.purged_rows.inc(rows)

    # --- readers' activity -----------------------------------------------------------------------

    async def user_seen(self, user_id: int, event_time: int) -> None:
        """A feed read. A user back after FANOUT_ACTIVE_DAYS gets their inbox rebuilt from the timelines
        of the accounts they follow; every user's edges carry a recent last_seen so pushes reach them."""
        activity = await self.store.activity(user_id)
        last = activity.last_seen
        if last is not None and event_time - last < EDGE_SEEN_REFRESH_MS and not activity.regenerating:
            return  # recent enough: nothing to refresh
        returning = self.hybrid and (
            activity.regenerating or (last is not None and event_time - last > self.settings.active_ms))
        seen = max(event_time, last or 0)
        if returning:
            self.metrics.regenerations.labels("started").inc()
        # Recorded before the followees are listed (see follow_changed); a returning user is flagged so
        # reads keep pulling until the rebuild below is done.
        await self.store.set_activity(user_id, Activity(seen, returning))
        followees = await self.store.following(user_id, limit=10**6)
        # Pushes resume first, so nothing posted during the rebuild is missed.
        await self.store.set_edges_seen(user_id, followees, seen, self.settings.write_window)
        if returning:
            celebrities = set(await self.store.celebrities(user_id, self.settings.max_celebrities_read))
            authors = [a for a in followees[: self.settings.regen_limit] if a not in celebrities]
            slots = asyncio.Semaphore(REGEN_CONCURRENCY)

            async def rebuild_from(author: int) -> None:
                async with slots:
                    await self.backfill([user_id], author)

            await asyncio.gather(*(rebuild_from(a) for a in authors))
            await self.store.set_activity(user_id, Activity(seen, False))
            self.metrics.regenerations.labels("finished").inc()
