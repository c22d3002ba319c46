"""Writing posts into inboxes: what every handler that delivers (posts, follows, rebuilds) shares."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Sequence

from fanout.core.clock import Clock, wall_ms, wall_us
from fanout.core.events import ChunkTask, FeedUpdate, PostDelivered
from fanout.core.policy import follower_bucket
from fanout.core.ports import Stores
from fanout.metrics import Metrics
from fanout.settings import Settings

LIST_PAGE = 10_000  # followers per read when listing a big audience (~10 ms of decoding)
# Hands a task to the chunks topic; returns only once Kafka acknowledged it, so the event that produced
# the task is never marked done before the task is safe.
SendTask = Callable[[ChunkTask], Awaitable[None]]
# Tells the read services what changed (a post stored or delivered, a delete applied, a follow); returns
# once Kafka has it, so a crash before that replays the event and sends the update again (read services
# apply updates idempotently).
# Several updates go in one call, to be applied in that order (fanout/write/update_sender.py).
SendUpdates = Callable[[Sequence[FeedUpdate]], Awaitable[None]]


async def no_updates(updates: Sequence[FeedUpdate]) -> None:
    """A SendUpdates for runs with no read service to tell (a bulk import, tests of other things)."""


class Delivery:
    """The dependencies of every handler, and the delivery steps they share."""

    def __init__(self, stores: Stores, settings: Settings, metrics: Metrics, send_task: SendTask,
                 send_updates: SendUpdates, clock_ms: Clock = wall_ms, clock_us: Clock = wall_us) -> None:
        self.stores = stores
        self.settings = settings
        self.metrics = metrics
        self.send_task = send_task
        self._send_updates = send_updates
        self.clock_ms = clock_ms
        self.clock_us = clock_us  # write stamps (purges), on the clock the store stamps its rows with

    async def push(self, post_id: int, author_id: int, followers: Sequence[int], event_time: int,
                   audience: int) -> None:
        """The post into each follower's inbox; `audience` (the author's follower count) labels the lag."""
        if not followers:
            return
        started = time.perf_counter()
        rows = await self.stores.inboxes.push_rows(((u, post_id) for u in followers), author_id)
        written_ms = self.clock_ms()
        self.metrics.inbox_rows_written.inc(rows)
        self.metrics.last_inbox_write.set(written_ms / 1000)
        self.metrics.fanout_duration.observe(time.perf_counter() - started)
        self.metrics.end_to_end_lag.labels(follower_bucket(audience)).observe(
            max(0.0, (written_ms - event_time) / 1000))

    async def send_update(self, update: FeedUpdate) -> None:
        await self._send_updates((update,))

    async def send_updates(self, updates: Iterable[FeedUpdate]) -> None:
        """Several updates, sent together and applied in this order. With no read service to tell
        (`no_updates`: a bulk import) they are not even built: an import had spent ~7% of its samples on
        no-op sends (py-spy, 100,000 edges)."""
        if self._send_updates is not no_updates:
            await self._send_updates(tuple(updates))

    async def delivered(self, post_id: int, author_id: int, followers: Sequence[int], event_time: int,
                        after: Sequence[FeedUpdate] = ()) -> None:
        """Tell live streams the post is in these followers' inboxes now. It must come after the post's
        PostStored, so that a read service already has its body: sent before, or given as `after` (sent
        first, in the same call)."""
        delivered = [PostDelivered(event_time=event_time, post_id=post_id, author_id=author_id,
                                   user_ids=tuple(followers))] if followers else []
        await self.send_updates([*after, *delivered])

    async def active_followers(self, author_id: int, seen_since: int | None = None, expected: int = 0) -> list[int]:
        """Every follower of the author seen since `seen_since` (None: every follower), in id order.

        Pages are sequential round trips, so an author `expected` to have more than a chunk of followers is
        listed in pages of LIST_PAGE: the slowest author of a batch of events sets when it is done."""
        followers: list[int] = []
        after: int | None = 0
        size = self.settings.chunk_size if expected <= self.settings.chunk_size else max(LIST_PAGE,
                                                                                       self.settings.chunk_size)
        while after is not None:
            page = await self.stores.graph.followers_page(author_id, after, size, seen_since)
            followers.extend(page.active)
            self.metrics.inactive_skipped.inc(page.skipped_inactive)
            after = page.next_after
        return followers

    def slices(self, users: Sequence[int], size: int | None = None) -> list[tuple[int, ...]]:
        """`users` in tuples of `size` (a fan-out chunk's, FANOUT_CHUNK_SIZE, unless given)."""
        size = size or self.settings.chunk_size
        return [tuple(users[i : i + size]) for i in range(0, len(users), size)]

    async def backfill(self, user_ids: Sequence[int], author_id: int, until_post_id: int | None = None) -> int:
        """Copy the author's latest posts (FANOUT_FOLLOW_BACKFILL), up to `until_post_id`, into these
        users' inboxes; returns rows written."""
        limit = self.settings.follow_backfill
        posts = await (self.stores.posts.timeline_head(author_id, until_post_id + 1, limit) if until_post_id
                       else self.stores.posts.latest_posts(author_id, limit))
        rows = await self.stores.inboxes.push_rows(((u, p) for p in posts for u in user_ids), author_id)
        self.metrics.backfilled_rows.inc(rows)
        return rows
