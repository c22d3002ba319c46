"""The Cassandra store: every query of the pipeline, as statements prepared once.

Writes of posts and follow state carry USING TIMESTAMP = event time (microseconds), so a replayed or
late event resolves last-writer-wins by event time; inbox rows are plain idempotent upserts with a TTL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from cassandra.query import BatchStatement, BatchType

from fanout.cassandra import Cassandra
from fanout.ids import MAX_ID, millis_of


@dataclass(frozen=True)
class AuthorStats:
    follower_count: int
    is_celebrity: bool
    version: int = 0  # see followers_by_author.version


@dataclass(frozen=True)
class Edge:
    following: bool
    changed_at: int  # event time (ms) of the follow/unfollow that set it


@dataclass(frozen=True)
class Activity:
    last_seen: int | None  # event time (ms) of the last recorded feed read; None: never recorded
    regenerating: bool  # the worker is rebuilding the inbox of a returning user


@dataclass(frozen=True)
class Post:
    post_id: int
    author_id: int
    body: str
    deleted: bool

    @property
    def created_at(self) -> int:
        return millis_of(self.post_id)


def micros(ms: int) -> int:
    return ms * 1000


class Store:
    def __init__(self, db: Cassandra, inbox_batch_size: int = 1) -> None:
        self.db = db
        self.inbox_batch_size = inbox_batch_size
        p = db.prepare
        self._post_tier = p("SELECT tier FROM {keyspace}.posts WHERE post_id = ?")
        self._insert_post = p("INSERT INTO {keyspace}.posts (post_id, author_id, body, tier, deleted) "
                              "VALUES (?, ?, ?, ?, false) USING TIMESTAMP ?")
        self._insert_timeline = p("INSERT INTO {keyspace}.author_timeline (author_id, post_id) VALUES (?, ?)")
        self._delete_post = p("UPDATE {keyspace}.posts USING TIMESTAMP ? SET deleted = true, deleted_by = ? "
                              "WHERE post_id = ?")
        # One request for a whole page of posts: the driver's per-request CPU, not Cassandra, bounds reads.
        self._get_posts = p("SELECT post_id, author_id, body, deleted, deleted_by FROM {keyspace}.posts "
                            "WHERE post_id IN ?")
        self._author_stats = p("SELECT follower_count, is_celebrity, version FROM {keyspace}.followers_by_author "
                               "WHERE author_id = ? LIMIT 1")
        self._edge = p("SELECT following, changed_at FROM {keyspace}.followers_by_author "
                       "WHERE author_id = ? AND follower_id = ?")
        self._set_edge = p("UPDATE {keyspace}.followers_by_author USING TIMESTAMP ? "
                           "SET following = ?, changed_at = ? WHERE author_id = ? AND follower_id = ?")
        self._set_stats = p("UPDATE {keyspace}.followers_by_author SET follower_count = ?, is_celebrity = ?, "
                            "version = ? WHERE author_id = ?")
        self._followers_page = p("SELECT follower_id, following, last_seen FROM {keyspace}.followers_by_author "
                                 "WHERE author_id = ? AND follower_id > ? LIMIT ?")
        self._set_edge_seen = p("UPDATE {keyspace}.followers_by_author SET last_seen = ? "
                                "WHERE author_id = ? AND follower_id = ?")
        self._following = p("SELECT followee_id, following FROM {keyspace}.following_by_user "
                            "WHERE user_id = ? AND followee_id > ? LIMIT ?")
        self._activity = p("SELECT last_seen, regenerating FROM {keyspace}.user_activity WHERE user_id = ?")
        self._set_activity = p("UPDATE {keyspace}.user_activity SET last_seen = ?, regenerating = ? WHERE user_id = ?")
        self._hide = p("INSERT INTO {keyspace}.unfollowed_by_user (user_id, author_id) VALUES (?, ?) "
                       "USING TIMESTAMP ? AND TTL ?")
        self._unhide = p("DELETE FROM {keyspace}.unfollowed_by_user USING TIMESTAMP ? "
                         "WHERE user_id = ? AND author_id = ?")
        self._hidden = p("SELECT author_id FROM {keyspace}.unfollowed_by_user WHERE user_id = ?")
        self._inbox_page = p("SELECT post_id, author_id FROM {keyspace}.inbox "
                             "WHERE user_id = ? AND post_id < ? LIMIT ?")
        self._delete_inbox = p("DELETE FROM {keyspace}.inbox USING TIMESTAMP ? WHERE user_id = ? AND post_id = ?")
        self._set_following = p("UPDATE {keyspace}.following_by_user USING TIMESTAMP ? SET following = ? "
                                "WHERE user_id = ? AND followee_id = ?")
        self._add_celebrity = p("INSERT INTO {keyspace}.celebrities_by_user (user_id, celebrity_id) "
                                "VALUES (?, ?) USING TIMESTAMP ?")
        self._remove_celebrity = p("DELETE FROM {keyspace}.celebrities_by_user USING TIMESTAMP ? "
                                   "WHERE user_id = ? AND celebrity_id = ?")
        self._celebrities = p("SELECT celebrity_id FROM {keyspace}.celebrities_by_user WHERE user_id = ? LIMIT ?")
        self._push = p("INSERT INTO {keyspace}.inbox (user_id, post_id, author_id) VALUES (?, ?, ?) USING TTL ?")
        self._inbox_head = p("SELECT post_id FROM {keyspace}.inbox WHERE user_id = ? AND post_id < ? LIMIT ?")
        self._timeline_head = p("SELECT post_id FROM {keyspace}.author_timeline "
                                "WHERE author_id = ? AND post_id < ? LIMIT ?")

    # --- posts -----------------------------------------------------------------------------------

    async def stored_tier(self, post_id: int) -> str | None:
        rows = await self.db.run(self._post_tier, (post_id,))
        return rows[0].tier if rows and rows[0].tier else None

    async def save_post(self, post_id: int, author_id: int, body: str, tier: str) -> None:
        """The post row and its author timeline entry: one write each, whatever the tier."""
        post = (post_id, author_id, body, tier, micros(millis_of(post_id)))
        await asyncio.gather(self.db.run(self._insert_post, post),
                             self.db.run(self._insert_timeline, (author_id, post_id)))

    async def mark_deleted(self, post_id: int, author_id: int, event_time: int) -> None:
        # A delete always wins over its own post's create, even if the clocks disagree.
        ts = micros(max(event_time, millis_of(post_id) + 1))
        await self.db.run(self._delete_post, (ts, author_id, post_id))

    async def posts(self, post_ids: Sequence[int]) -> dict[int, Post]:
        if not post_ids:
            return {}
        rows = await self.db.run(self._get_posts, (list(post_ids),))
        # Only its author deletes a post: a delete claimed by anyone else is ignored. It may arrive before
        # the post itself, so this is decided here, when both are known.
        return {r.post_id: Post(r.post_id, r.author_id, r.body or "", bool(r.deleted) and r.deleted_by == r.author_id)
                for r in rows}

    # --- follow graph ----------------------------------------------------------------------------

    async def author_stats(self, author_id: int) -> AuthorStats:
        rows = await self.db.run(self._author_stats, (author_id,))
        if not rows:
            return AuthorStats(0, False)
        return AuthorStats(rows[0].follower_count or 0, bool(rows[0].is_celebrity), rows[0].version or 0)

    async def edge(self, author_id: int, follower_id: int) -> Edge | None:
        rows = await self.db.run(self._edge, (author_id, follower_id))
        if not rows or rows[0].changed_at is None:
            return None
        return Edge(bool(rows[0].following), rows[0].changed_at)

    async def set_edge(self, author_id: int, follower_id: int, edge: Edge, stats: AuthorStats,
                       last_seen: int | None = None) -> None:
        """The edge and the author's count/tier in one atomic single-partition batch."""
        batch = BatchStatement(batch_type=BatchType.UNLOGGED)
        batch.add(self._set_edge, (micros(edge.changed_at), edge.following, edge.changed_at, author_id, follower_id))
        if edge.following and last_seen is not None:
            batch.add(self._set_edge_seen, (last_seen, author_id, follower_id))
        batch.add(self._set_stats, (stats.follower_count, stats.is_celebrity, stats.version, author_id))
        batch.is_idempotent = True
        await self.db.run(batch)

    async def set_following(self, user_id: int, followee_id: int, following: bool, event_time: int) -> None:
        await self.db.run(self._set_following, (micros(event_time), following, user_id, followee_id))

    async def add_celebrity(self, user_ids: Iterable[int], celebrity_id: int, version: int, window: int) -> int:
        """Celebrity-set rows are written at the author's version, so they follow decision order."""
        requests = ((self._add_celebrity, (u, celebrity_id, version)) for u in user_ids)
        return await self.db.run_window(requests, window)

    async def remove_celebrity(self, user_ids: Iterable[int], celebrity_id: int, version: int, window: int) -> int:
        requests = ((self._remove_celebrity, (version, u, celebrity_id)) for u in user_ids)
        return await self.db.run_window(requests, window)

    async def followers_page(self, author_id: int, after: int, limit: int,
                             seen_since: int | None = None) -> tuple[list[int], int, int | None]:
        """Followers with id > after that were seen at or after `seen_since` (unknown counts as seen),
        how many followers were skipped as inactive, and the id to continue after (None at the end)."""
        rows = await self.db.run(self._followers_page, (author_id, after, limit))
        following = [r for r in rows if r.following]
        active = [r.follower_id for r in following
                  if seen_since is None or r.last_seen is None or r.last_seen >= seen_since]
        return active, len(following) - len(active), (rows[-1].follower_id if len(rows) == limit else None)

    async def following(self, user_id: int, limit: int) -> list[int]:
        """Accounts the user follows, at most `limit`."""
        followees: list[int] = []
        after = 0
        while len(followees) < limit:
            rows = await self.db.run(self._following, (user_id, after, min(limit, 1000)))
            followees.extend(r.followee_id for r in rows if r.following)
            if len(rows) < min(limit, 1000):
                break
            after = rows[-1].followee_id
        return followees[:limit]

    async def set_edges_seen(self, user_id: int, followees: Iterable[int], last_seen: int, window: int) -> None:
        requests = ((self._set_edge_seen, (last_seen, author, user_id)) for author in followees)
        await self.db.run_window(requests, window)

    async def activity(self, user_id: int) -> Activity:
        rows = await self.db.run(self._activity, (user_id,))
        if not rows:
            return Activity(None, False)
        return Activity(rows[0].last_seen, bool(rows[0].regenerating))

    async def set_activity(self, user_id: int, activity: Activity) -> None:
        await self.db.run(self._set_activity, (activity.last_seen, activity.regenerating, user_id))

    async def hide_author(self, user_id: int, author_id: int, event_time: int, ttl: int) -> None:
        await self.db.run(self._hide, (user_id, author_id, micros(event_time), ttl))

    async def unhide_author(self, user_id: int, author_id: int, event_time: int) -> None:
        await self.db.run(self._unhide, (micros(event_time), user_id, author_id))

    async def hidden_authors(self, user_id: int) -> set[int]:
        return {r.author_id for r in await self.db.run(self._hidden, (user_id,))}

    async def purge_inbox(self, user_id: int, author_id: int, as_of_us: int, window: int, page: int = 1000) -> int:
        """Delete the author's rows from the user's inbox (one tombstone per row of that author, never
        a range) as of `as_of_us`: rows written later (a follow again, backfilled while this purge ran)
        keep their newer timestamps and survive. Returns rows deleted."""
        before: int | None = None
        doomed: list[int] = []
        while True:
            rows = await self.db.run(self._inbox_page, (user_id, before or MAX_ID, page))
            doomed.extend(r.post_id for r in rows if r.author_id == author_id)
            if len(rows) < page:
                break
            before = rows[-1].post_id
        await self.db.run_window(((self._delete_inbox, (as_of_us, user_id, pid)) for pid in doomed), window)
        return len(doomed)

    async def celebrities(self, user_id: int, limit: int) -> list[int]:
        rows = await self.db.run(self._celebrities, (user_id, limit))
        return [r.celebrity_id for r in rows]

    # --- inbox and timelines ---------------------------------------------------------------------

    async def push(self, post_id: int, author_id: int, user_ids: Sequence[int], ttl: int, window: int) -> int:
        """Write the post into each user's inbox, `window` requests in flight; returns rows written."""
        return await self.push_rows(((u, post_id) for u in user_ids), author_id, ttl, window)

    async def push_rows(self, rows: Iterable[tuple[int, int]], author_id: int, ttl: int, window: int) -> int:
        """Write (user, post) inbox rows of one author in unlogged batches of `inbox_batch_size` rows,
        `window` requests in flight; returns rows written."""
        written = 0

        def requests() -> Iterator[tuple[Any, Sequence[Any] | None]]:
            nonlocal written
            chunk: list[tuple[int, int, int, int]] = []
            for user, post in rows:
                chunk.append((user, post, author_id, ttl))
                written += 1
                if len(chunk) >= self.inbox_batch_size:
                    yield self._inbox_request(chunk)
                    chunk = []
            if chunk:
                yield self._inbox_request(chunk)

        await self.db.run_window(requests(), window)
        return written

    def _inbox_request(self, rows: list[tuple[int, int, int, int]]) -> tuple[Any, Sequence[Any] | None]:
        if len(rows) == 1:  # a batch of one costs more than the plain statement
            return self._push, rows[0]
        batch = BatchStatement(batch_type=BatchType.UNLOGGED)
        for row in rows:
            batch.add(self._push, row)
        batch.is_idempotent = True
        return batch, None

    async def inbox_head(self, user_id: int, before: int | None, limit: int) -> list[int]:
        rows = await self.db.run(self._inbox_head, (user_id, before or MAX_ID, limit))
        return [r.post_id for r in rows]

    async def timeline_head(self, author_id: int, before: int | None, limit: int) -> list[int]:
        rows = await self.db.run(self._timeline_head, (author_id, before or MAX_ID, limit))
        return [r.post_id for r in rows]

