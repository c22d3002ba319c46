"""Follows and unfollows, and what they set off: backfills, purges, celebrity-set changes, tier switches."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from fanout.events import CelebrityChunk, ChunkTask, DemotionChunk, FollowChanged, InboxPurge
from fanout.handlers.delivery import Delivery
from fanout.model import Edge
from fanout.policy import CelebritySet, decide_follow


class GraphHandlers:
    def __init__(self, delivery: Delivery) -> None:
        self.d = delivery

    async def follow_changed(self, author_id: int, follower_id: int, following: bool, event_time: int) -> None:
        """Apply a follow or unfollow; a stale or repeated one (not newer than the edge) changes nothing."""
        d, graph, readers = self.d, self.d.stores.graph, self.d.stores.readers
        stats, edge, activity = await asyncio.gather(graph.author_stats(author_id), graph.edge(author_id, follower_id),
                                                     readers.activity(follower_id))
        change = decide_follow(edge, stats, following, event_time, d.settings)
        version = change.stats.version
        # The follower's side first; these writes are last-writer-wins by event time, so redoing them on
        # a replay is harmless and a stale event cannot override a newer one.
        follower_side: list[Awaitable[object]] = [graph.set_following(follower_id, author_id, following, event_time)]
        if following:
            follower_side.append(readers.unhide_author(follower_id, author_id, event_time))
        else:  # hidden at read at once; the purge below removes the rows in the background
            follower_side.append(readers.hide_author(follower_id, author_id, event_time))
        if change.celebrity_set is CelebritySet.ADD:
            follower_side.append(readers.add_celebrity([follower_id], author_id, version))
        elif change.celebrity_set is CelebritySet.REMOVE:
            follower_side.append(readers.remove_celebrity([follower_id], author_id, version))
        await asyncio.gather(*follower_side)
        if not change.fresh:
            return
        if change.backfill:
            await d.backfill([follower_id], author_id)
        if change.purge:
            # Stamped with the time of this decision: inbox rows are written at the writer's clock, so rows
            # pushed before now are purged and rows of a later follow (backfilled after now) survive.
            await d.send_task(InboxPurge(event_time=event_time, user_id=follower_id, author_id=author_id,
                                         as_of_us=d.clock_ms() * 1000))
        if change.tier_switch:
            # The event's own follower is handled above; its edge is not written yet, so leave it out.
            await self.tier_switched(author_id, change.stats.is_celebrity, event_time, version, leave_out=follower_id)
        # The commit point: the edge, the count and the version change together, in one single-partition
        # batch. A crash before it replays this event as fresh, with the same version.
        await graph.set_edge(author_id, follower_id, Edge(following, event_time), change.stats,
                             last_seen=activity.last_seen)
        await d.send_update(FollowChanged(event_time=event_time, follower_id=follower_id, followee_id=author_id,
                                          following=following))
        if following:
            # A UserSeen of the follower may have run meanwhile (it is keyed by the follower, so another
            # batch group or worker) and listed the followees before this edge existed. It records the
            # activity before listing; we re-read it after writing: one of the two sees the other.
            latest = await readers.activity(follower_id)
            if latest.last_seen != activity.last_seen and latest.last_seen is not None:
                await graph.set_edges_seen(follower_id, [author_id], latest.last_seen)

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

    async def demoted(self, task: DemotionChunk) -> None:
        """Backfill first, then leave the celebrity sets: at every moment the author's recent posts are
        reachable through the inbox or the celebrity timeline (reads dedupe)."""
        await self.d.backfill(task.follower_ids, task.author_id, until_post_id=task.until_post_id)
        await self.d.stores.readers.remove_celebrity(task.follower_ids, task.author_id, task.author_version)

    async def purge(self, task: InboxPurge) -> None:
        if task.author_id not in await self.d.stores.readers.hidden_authors(task.user_id):
            return  # followed again meanwhile: its backfilled rows must stay
        rows = await self.d.stores.inboxes.purge_inbox(task.user_id, task.author_id, task.as_of_us)
        self.d.metrics.purged_rows.inc(rows)
