"""Applies plans (fanout/core/plans.py) to the stores and topics: the one place of the worker that writes.

Phases run in order; the steps of a phase run together (one task each only when there are several: a
coroutine of one step is awaited directly), at most `Phase.limit` at once, and inside `bulk_work()` for
a bulk phase. Which calls are coalesced into one request is the adapter's business
(fanout/adapters/cassandra/batching.py: the calls of one event-loop iteration go out together), so the
steps of a phase, started together, share requests with each other and with other events' steps.

A step that reads before it knows its writes (SwitchTier, MarkFollowees, RecheckSeen, RebuildFrom) reads
here, asks plans.py for the plan of what follows and runs it, so the decision stays a pure function.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from typing import Any

from fanout.core import plans
from fanout.core.clock import Clock, wall_ms, wall_us
from fanout.core.events import ChunkTask, FeedUpdate, InboxPurge
from fanout.core.plans import Phase, Plan, Step
from fanout.core.policy import follower_bucket
from fanout.core.ports import Stores, bulk_work
from fanout.metrics import Metrics
from fanout.settings import Settings
from fanout.write.trimming import InboxTrimmer

log = logging.getLogger(__name__)

LIST_PAGE = 10_000  # followers per read when listing a big audience (~10 ms of decoding)
# Hands a task to the chunks topic; returns only once Kafka acknowledged it, so the event that produced
# the task is never marked done before the task is safe.
SendTask = Callable[[ChunkTask], Awaitable[None]]
# Tells the read services what changed (a post stored or delivered, a delete applied, a follow); returns
# once Kafka has it, so a crash before that replays the event and sends the update again (read services
# apply updates idempotently). Several updates go in one call, to be applied in that order
# (fanout/write/update_sender.py).
SendUpdates = Callable[[Sequence[FeedUpdate]], Awaitable[None]]


async def no_updates(updates: Sequence[FeedUpdate]) -> None:
    """A SendUpdates for runs with no read service to tell (a bulk import, tests of other things)."""


class Executor:
    """Runs plans on the ports; also the reads that handlers and reading steps share (`active_followers`)."""

    def __init__(self, stores: Stores, settings: Settings, metrics: Metrics, send_task: SendTask,
                 send_updates: SendUpdates, clock_ms: Clock = wall_ms, clock_us: Clock = wall_us) -> None:
        self.stores = stores
        self.settings = settings
        self.metrics = metrics
        self.send_task = send_task
        self._send_updates = send_updates
        self.clock_ms = clock_ms
        self.clock_us = clock_us  # write stamps (purges), on the clock the store stamps its rows with
        self.trimmer = InboxTrimmer(stores, metrics, cap=settings.inbox_cap, every=settings.inbox_trim_every,
                                    readers=settings.inbox_trim_readers)
        # What each step does: a coroutine of the store or topic call itself (no coroutine of ours around
        # it), or one of the methods below where a step does more than one call.
        st = self.stores
        self._apply: dict[type[Any], Callable[[Any], Coroutine[Any, Any, Any]]] = {
            plans.SavePost: lambda s: st.posts.save_post(s.post_id, s.author_id, s.body, s.tier),
            plans.MarkDeleted: lambda s: st.posts.mark_deleted(s.post_id, s.author_id, s.event_time),
            plans.Push: self._push, plans.Backfill: self._backfill, plans.PurgeInbox: self._purge_inbox,
            plans.SetFollowings: lambda s: st.graph.set_followings(s.changes),
            plans.SetHidden: lambda s: st.readers.set_hidden(s.changes),
            plans.SetCelebrities: lambda s: st.readers.set_celebrities(s.changes),
            plans.CommitEdges: lambda s: st.graph.set_edges(s.author_id, s.changes, s.stats),
            plans.SetEdgesSeen: lambda s: st.graph.set_edges_seen(s.user_id, s.followees, s.seen, s.follows),
            plans.SetActivity: lambda s: st.readers.set_activity(s.user_id, s.activity),
            plans.AddCelebrity: lambda s: st.readers.add_celebrity(s.user_ids, s.author_id, s.version),
            plans.RemoveCelebrity: lambda s: st.readers.remove_celebrity(s.user_ids, s.author_id, s.version),
            plans.SendTasks: self._send_tasks, plans.SendPurges: self._send_purges,
            plans.SendUpdates: lambda s: self.send_updates(s.updates), plans.SwitchTier: self._switch_tier,
            plans.MarkFollowees: self._mark_followees, plans.RecheckSeen: self._recheck_seen,
            plans.RebuildFrom: self._rebuild_from,
        }

    async def run(self, plan: Plan) -> None:
        apply = self._apply
        for phase in plan:
            steps = phase.steps
            if len(steps) == 1 and not phase.bulk and type(steps[0]) in apply:
                await apply[type(steps[0])](steps[0])  # most phases: one call, awaited directly
            else:
                await self._run_phase(phase)

    async def _run_phase(self, phase: Phase) -> None:
        calls = []
        for step in phase.steps:
            if isinstance(step, plans.Count):
                counter = getattr(self.metrics, step.metric)
                (counter.labels(step.label) if step.label is not None else counter).inc(step.amount)
            elif isinstance(step, plans.Warn):
                log.warning("%s", step.message)
            else:
                calls.append(step)
        if not calls:
            return
        with bulk_work() if phase.bulk else contextlib.nullcontext():
            if len(calls) == 1:
                await self._apply[type(calls[0])](calls[0])
            elif phase.limit is None:
                await asyncio.gather(*(self._apply[type(s)](s) for s in calls))
            else:
                slots = asyncio.Semaphore(phase.limit)

                async def limited(step: Step) -> None:
                    async with slots:
                        await self._apply[type(step)](step)

                await asyncio.gather(*(limited(s) for s in calls))

    # --- reads shared with the handlers ------------------------------------------------------------------

    async def active_followers(self, author_id: int, seen_since: int | None = None, expected: int = 0) -> list[int]:
        """Every follower of the author seen since `seen_since` (None: every follower), in id order."""
        return (await self.audience(author_id, seen_since, expected, over_follows=0))[0]

    async def audience(self, author_id: int, seen_since: int | None, expected: int,
                       over_follows: int) -> tuple[list[int], dict[int, int]]:
        """`active_followers`, and the follow counts of those following more than `over_follows` accounts
        (none if 0).

        Pages are sequential round trips, so an author `expected` to have more than a chunk of followers is
        listed in pages of LIST_PAGE: the slowest author of a batch of events sets when it is done."""
        followers: list[int] = []
        over: dict[int, int] = {}
        after: int | None = 0
        chunk = self.settings.chunk_size
        size = chunk if expected <= chunk else max(LIST_PAGE, chunk)
        while after is not None:
            page = await self.stores.graph.followers_page(author_id, after, size, seen_since, over_follows)
            followers.extend(page.active)
            over.update(page.over_followers)
            self.metrics.inactive_skipped.inc(page.skipped_inactive)
            after = page.next_after
        return followers, over

    @property
    def announces(self) -> bool:
        """Whether there are read services to tell (not for a bulk import)."""
        return self._send_updates is not no_updates

    async def send_updates(self, updates: Iterable[FeedUpdate]) -> None:
        """Several updates, sent together and applied in this order. With no read service to tell
        (`no_updates`: a bulk import) they are not even built."""
        if self._send_updates is not no_updates:
            await self._send_updates(tuple(updates))

    # --- writes ------------------------------------------------------------------------------------------

    async def _push(self, s: plans.Push) -> None:
        started = time.perf_counter()
        rows = await self.stores.inboxes.push_rows(((u, s.post_id) for u in s.followers), s.author_id)
        written_ms = self.clock_ms()
        self.metrics.inbox_rows_written.inc(rows)
        self.metrics.last_inbox_write.set(written_ms / 1000)
        self.metrics.fanout_duration.observe(time.perf_counter() - started)
        self.metrics.end_to_end_lag.labels(follower_bucket(s.audience)).observe(
            max(0.0, (written_ms - s.event_time) / 1000))
        await self.trimmer.pushed(s.followers)

    async def _backfill(self, s: plans.Backfill) -> None:
        limit = self.settings.follow_backfill
        posts = await (self.stores.posts.timeline_head(s.author_id, s.until_post_id + 1, limit) if s.until_post_id
                       else self.stores.posts.latest_posts(s.author_id, limit))
        rows = await self.stores.inboxes.push_rows(((u, p) for p in posts for u in s.user_ids), s.author_id)
        self.metrics.backfilled_rows.inc(rows)
        await self.trimmer.pushed(u for _ in posts for u in s.user_ids)

    async def _purge_inbox(self, s: plans.PurgeInbox) -> None:
        self.metrics.purged_rows.inc(await self.stores.inboxes.purge_inbox(s.user_id, s.author_id, s.as_of_us))

    # --- Kafka -------------------------------------------------------------------------------------------

    async def _send_tasks(self, s: plans.SendTasks) -> None:
        if len(s.tasks) == 1:
            await self.send_task(s.tasks[0])
        else:
            await asyncio.gather(*(self.send_task(t) for t in s.tasks))

    async def _send_purges(self, s: plans.SendPurges) -> None:
        as_of_us = self.clock_us()  # see plans.SendPurges
        await self._send_tasks(plans.SendTasks(tuple(
            InboxPurge(event_time=event_time, user_id=follower, author_id=s.author_id, as_of_us=as_of_us)
            for follower, event_time in s.purges)))

    # --- steps that read, then run the plan of what follows ----------------------------------------------

    async def _switch_tier(self, s: plans.SwitchTier) -> None:
        followers = await self.active_followers(s.author_id)
        newest = None if s.to_celebrity else await self.stores.posts.timeline_head(s.author_id, None, 1)
        await self.run(plans.tier_switch(s, followers, newest[0] if newest else None, self.settings.chunk_size))

    async def _mark_followees(self, s: plans.MarkFollowees) -> None:
        followees = await self.stores.graph.following(s.user_id, limit=10**6)
        await self.run(plans.followees_seen(s, followees, self.settings))

    async def _recheck_seen(self, s: plans.RecheckSeen) -> None:
        as_read = dict(s.as_read)
        latest = await self.stores.readers.activities(as_read)
        await self.run(plans.reseen(s.author_id, as_read, latest))

    async def _rebuild_from(self, s: plans.RebuildFrom) -> None:
        celebrities = await self.stores.readers.celebrities(s.user_id)
        await self.run(plans.rebuild_backfills(s, celebrities))
