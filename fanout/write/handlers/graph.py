"""Follows and unfollows, and what they set off: backfills, purges, celebrity-set changes, tier switches."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from fanout.core.events import CelebrityChunk, CelebritySetChanged, ChunkTask, DemotionChunk, FollowChanged, InboxPurge
from fanout.core.model import Activity, EdgeChange
from fanout.core.policy import CelebritySet, FollowSegment, FollowStep, decide_follows, seen_may_be_refreshing
from fanout.write.handlers.delivery import Delivery

# Follow changes of one author decided and committed together at most (a commit is one single-partition
# batch of about two statements per edge: this keeps it far below Cassandra's batch size limits).
MAX_SEGMENT = 256
Change = tuple[int, bool, int]  # (follower, following, event time)


class GraphHandlers:
    def __init__(self, delivery: Delivery, seen_concurrently: bool = True) -> None:
        """`seen_concurrently`: whether a follower's UserSeen may be handled while its follow is (by another
        batch group or worker), which the activity re-read after each commit guards against. The bulk import
        runs with the workers stopped (README), so it passes False and skips that read."""
        self.d = delivery
        self.seen_concurrently = seen_concurrently

    async def follow_changed(self, author_id: int, follower_id: int, following: bool, event_time: int) -> None:
        """Apply a follow or unfollow; a stale or repeated one (not newer than the edge) changes nothing."""
        await self.follows_changed(author_id, [(follower_id, following, event_time)])

    async def follows_changed(self, author_id: int, changes: Sequence[Change]) -> None:
        """Apply the author's consecutive follows and unfollows of a batch of events, in order, as if one at a
        time: one read of their edges, the decisions in order (`decide_follows`), then per segment the
        follower-side rows, backfills and purges of all of them together and one commit."""
        graph, readers = self.d.stores.graph, self.d.stores.readers
        joining = {f for f, following, _ in changes if following}
        # One after the other, not gathered: each read is coalesced with the other runs' (the adapter's
        # loaders), so a batch pays a round trip more, while a task per read (three per run, most runs one
        # follow long) cost the worker's event loop more than the reads (py-spy: a third of its samples in
        # asyncio's machinery). The author's stats come from the worker's cache, mostly.
        stats = await graph.author_stats(author_id)
        edges = await graph.edges(author_id, (f for f, _, _ in changes))
        seen = await readers.activities(joining)
        joined: set[int] = set()
        hid: set[int] = set()  # followers this run has hidden the author from
        for segment in decide_follows(edges, stats, changes, self.d.settings, MAX_SEGMENT):
            await self._apply(author_id, segment, seen, hid)
            joined |= {f for f, edge in segment.edges.items() if edge.following}
        # A UserSeen of a follower may have run meanwhile (it is keyed by the follower, so another batch group
        # or worker) and listed the followees before this edge existed. It records the activity before
        # listing; we re-read it after writing: one of the two sees the other. Only a follower whose activity,
        # as read, was never seen or due for a refresh can have such a UserSeen in flight
        # (`seen_may_be_refreshing`): most followers read their feed within the day.
        if not self.seen_concurrently:
            return
        now = self.d.clock_ms()
        recheck = {f for f in joined if seen_may_be_refreshing(seen[f], now)}
        if recheck:
            latest = await readers.activities(recheck)
            await asyncio.gather(*(graph.set_edges_seen(f, [author_id], a.last_seen) for f, a in latest.items()
                                   if a.last_seen is not None and a.last_seen != seen[f].last_seen))

    async def _apply(self, author_id: int, segment: FollowSegment, seen: dict[int, Activity], hid: set[int]) -> None:
        d, graph, readers = self.d, self.d.stores.graph, self.d.stores.readers
        # The followers' side first; these writes are last-writer-wins by event time (celebrity sets by the
        # author's version), so redoing them on a replay is harmless and a stale event cannot override a
        # newer one. All of them together: the adapter sends them as a few batches.
        steps = segment.steps
        hidden = _hidden_changes(author_id, steps, seen, hid)
        celebrities = [(s.follower_id, author_id, s.decision.celebrity_set is CelebritySet.ADD,
                        s.decision.stats.version) for s in steps if s.decision.celebrity_set is not CelebritySet.KEEP]
        followings = graph.set_followings([(s.follower_id, author_id, s.decision.following, s.event_time)
                                           for s in steps])
        if hidden or celebrities:
            await asyncio.gather(followings, readers.set_hidden(hidden), readers.set_celebrities(celebrities))
        else:
            await followings  # the common case, without a task each for two writes of nothing
        if not segment.edges:
            return  # nothing fresh: stale or repeated events change nothing else
        fresh = [s for s in segment.steps if s.decision.fresh]
        # One timeline read for every new follower of the segment. One that unfollows again within it is
        # backfilled too and purged by its unfollow's task, as one event at a time would.
        backfill = sorted({s.follower_id for s in fresh if s.decision.backfill})
        if backfill:
            await d.backfill(backfill, author_id)
        # Stamped with the time of this decision: inbox rows are written at the writer's clock, so rows
        # pushed before now are purged and rows of a later follow (backfilled after now) survive. In
        # microseconds: a run backfills and purges the same pair within a millisecond.
        await asyncio.gather(*(
            d.send_task(InboxPurge(event_time=s.event_time, user_id=s.follower_id, author_id=author_id,
                                   as_of_us=d.clock_us()))
            for s in fresh if s.decision.purge))
        if (switch := segment.tier_switch) is not None:
            # The switching event's own follower is handled above; its edge is not written yet, so leave it
            # out. Every edge decided before the switch was committed with the previous segment.
            await self.tier_switched(author_id, switch.decision.stats.is_celebrity, switch.event_time,
                                     switch.decision.stats.version, leave_out=switch.follower_id)
        # The commit point: the edges, the count and the version change together, in one single-partition
        # batch. A crash before it replays these events as fresh, with the same versions.
        await graph.set_edges(author_id, [EdgeChange(f, edge, seen[f].last_seen if f in seen else None)
                                          for f, edge in segment.edges.items()], segment.stats)
        # Live streams keep their connected readers' followees current.
        await d.send_updates(FollowChanged(event_time=edge.changed_at, follower_id=f, followee_id=author_id,
                                           following=edge.following) for f, edge in segment.edges.items())

    async def tier_switched(self, author_id: int, celebrity: bool, event_time: int, version: int,
                            leave_out: int) -> None:
        """The author crossed the threshold: its followers' celebrity sets change, in the background."""
        d = self.d
        d.metrics.tier_switches.labels("to_pull" if celebrity else "to_push").inc()
        followers = [f for f in await d.active_followers(author_id) if f != leave_out]
        tasks: list[ChunkTask]
        if celebrity:
            tasks = [CelebrityChunk(event_time=event_time, author_id=author_id, follower_ids=s, author_version=version)
                     for s in d.slices(followers)]
        else:
            # Posts up to the newest one now were pulled; later ones will be pushed.
            newest = await d.stores.posts.timeline_head(author_id, None, 1)
            tasks = [DemotionChunk(event_time=event_time, author_id=author_id, follower_ids=s, author_version=version,
                                   until_post_id=newest[0] if newest else 0)
                     for s in d.slices(followers)]
        await asyncio.gather(*(d.send_task(t) for t in tasks))

    async def promoted(self, task: CelebrityChunk) -> None:
        await self.d.stores.readers.add_celebrity(task.follower_ids, task.author_id, task.author_version)
        await self.d.send_update(CelebritySetChanged(event_time=task.event_time, author_id=task.author_id,
                                                     user_ids=task.follower_ids, celebrity=True))

    async def demoted(self, task: DemotionChunk) -> None:
        """Backfill first, then leave the celebrity sets: at every moment the author's recent posts are
        reachable through the inbox or the celebrity timeline (reads dedupe)."""
        await self.d.backfill(task.follower_ids, task.author_id, until_post_id=task.until_post_id)
        await self.d.stores.readers.remove_celebrity(task.follower_ids, task.author_id, task.author_version)
        await self.d.send_update(CelebritySetChanged(event_time=task.event_time, author_id=task.author_id,
                                                     user_ids=task.follower_ids, celebrity=False))

    async def purge(self, task: InboxPurge) -> None:
        if task.author_id not in await self.d.stores.readers.hidden_authors(task.user_id):
            return  # followed again meanwhile: its backfilled rows must stay
        rows = await self.d.stores.inboxes.purge_inbox(task.user_id, task.author_id, task.as_of_us)
        self.d.metrics.purged_rows.inc(rows)


def _hidden_changes(author_id: int, steps: Sequence[FollowStep], seen: dict[int, Activity],
                    hid: set[int]) -> list[tuple[int, int, bool, int]]:
    """The hidden-set changes of these steps. An unfollowed author is hidden at read at once (the purge
    task removes its rows in the background); a follow removes it from the set only if it is there, as
    read before the run (`seen`) or hidden by an earlier step of the run (`hid`, updated here): most
    follows are of authors never unfollowed, and the removal would cost a write and a new sets version
    (which makes the read service re-read the sets) for nothing. Only this author's handler adds this
    author to a set, and it runs one run at a time, so an absent element stays absent meanwhile.

    A step that is not fresh writes nothing: a replayed one had its rows written before its commit, and a
    stale unfollow must not hide an author that a newer follow left out of the set without a removal."""
    changes = []
    for s in steps:
        if not s.decision.fresh:
            continue
        if not s.decision.following:
            hid.add(s.follower_id)
            changes.append((s.follower_id, author_id, True, s.event_time))
        elif s.follower_id in hid or author_id in seen[s.follower_id].hidden:
            changes.append((s.follower_id, author_id, False, s.event_time))
    return changes
