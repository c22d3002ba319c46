"""An in-memory adapter of every port, for unit tests without servers.

It keeps Cassandra's semantics where the pipeline depends on them, so a handler that is right here is
right on the real store: every cell carries a write timestamp (the event time where the CQL says USING
TIMESTAMP, the clock otherwise), the newest write wins, a row tombstone shadows every cell written at or
before it, INSERTs leave a row marker (UPDATEs do not), and TTLs expire on the clock. tests/contract runs
the same suite against this and real Cassandra.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence

from fanout.adapters.memory_notifications import MemoryNotifications
from fanout.adapters.memory_table import STATIC, Table, clock_us
from fanout.core.ids import MAX_ID, millis_of
from fanout.core.model import (
    Activity,
    AuthorStats,
    Edge,
    EdgeChange,
    FollowerPage,
    Post,
    ReaderPage,
    ReaderSets,
    ReaderState,
    StoredPost,
    Tier,
)
from fanout.core.ports import Stores
from fanout.settings import Settings


class MemoryStorage:
    """All four ports on one set of tables (`stores()` hands them out as a `Stores`)."""

    def __init__(self, settings: Settings, now_us: Callable[[], int] = clock_us) -> None:
        self.ttl = settings.inbox_ttl_seconds
        self.now_us = now_us
        self.posts_t, self.timelines, self.followers, self.followings, self.inboxes = (Table(now_us) for _ in range(5))
        self.notifications = MemoryNotifications(settings.notification_retention_days * 86_400,
                                                 lambda: now_us() // 1000)

    def stores(self) -> Stores:
        return Stores(posts=self, graph=self, readers=self, inboxes=self, notifications=self.notifications)

    # --- posts and timelines ---------------------------------------------------------------------

    async def stored_post(self, post_id: int) -> StoredPost | None:
        row = self.posts_t.row(post_id, None) or {}
        return StoredPost(row["author_id"], Tier(row["tier"])) if row.get("tier") else None

    async def save_post(self, post_id: int, author_id: int, body: str, tier: Tier) -> None:
        values = {"author_id": author_id, "body": body, "tier": tier.value, "deleted": False}
        self.posts_t.write(post_id, None, values, ts=millis_of(post_id) * 1000, insert=True)
        self.timelines.write(author_id, post_id, {}, insert=True)

    async def mark_deleted(self, post_id: int, author_id: int, event_time: int) -> None:
        ts = max(event_time, millis_of(post_id) + 1) * 1000
        self.posts_t.write(post_id, None, {f"deleter:{author_id}": True}, ts=ts)  # one cell per set element

    async def posts(self, post_ids: Sequence[int]) -> dict[int, Post]:
        found = {}
        for pid in post_ids:
            row = self.posts_t.row(pid, None)
            if row and row.get("author_id") is not None:
                deleted = bool(row.get(f"deleter:{row['author_id']}"))
                found[pid] = Post(pid, row["author_id"], row.get("body") or "", deleted)
        return found

    async def latest_posts(self, author_id: int, limit: int) -> list[int]:
        return _head(self.timelines, author_id, None, limit)

    async def timeline_head(self, author_id: int, before: int | None, limit: int) -> list[int]:
        return _head(self.timelines, author_id, before, limit)

    async def timeline_heads(self, author_ids: Sequence[int], before: int | None, limit: int) -> list[list[int]]:
        return [_head(self.timelines, a, before, limit) for a in author_ids]

    # --- the follow graph ------------------------------------------------------------------------

    async def author_stats(self, author_id: int) -> AuthorStats:
        row = self.followers.row(author_id, STATIC) or {}
        return AuthorStats(row.get("follower_count") or 0, bool(row.get("is_celebrity")), row.get("version") or 0)

    async def edge(self, author_id: int, follower_id: int) -> Edge | None:
        row = self.followers.row(author_id, follower_id)
        if not row or row.get("changed_at") is None:
            return None
        return Edge(bool(row.get("following")), row["changed_at"])

    async def edges(self, author_id: int, follower_ids: Iterable[int]) -> dict[int, Edge]:
        found = {f: await self.edge(author_id, f) for f in set(follower_ids)}
        return {f: e for f, e in found.items() if e is not None}

    async def set_edge(self, author_id: int, follower_id: int, edge: Edge, stats: AuthorStats,
                       last_seen: int | None = None) -> None:
        await self.set_edges(author_id, [EdgeChange(follower_id, edge, last_seen)], stats)

    async def set_edges(self, author_id: int, changes: Sequence[EdgeChange], stats: AuthorStats) -> None:
        for c in changes:
            self.followers.write(author_id, c.follower_id, {"following": c.edge.following,
                                                            "changed_at": c.edge.changed_at},
                                 ts=c.edge.changed_at * 1000)
            if c.edge.following and c.last_seen is not None:
                self.followers.write(author_id, c.follower_id, {"last_seen": c.last_seen})
        self.followers.write(author_id, STATIC, {"follower_count": stats.follower_count,
                                                 "is_celebrity": stats.is_celebrity, "version": stats.version})

    async def set_following(self, user_id: int, followee_id: int, following: bool, event_time: int) -> None:
        self.followings.write(user_id, followee_id, {"following": following}, ts=event_time * 1000)

    async def set_followings(self, changes: Iterable[tuple[int, int, bool, int]]) -> None:
        for user, followee, following, t in changes:
            await self.set_following(user, followee, following, t)

    async def followers_page(self, author_id: int, after: int, limit: int,
                             seen_since: int | None = None, over_follows: int = 0) -> FollowerPage:
        rows = [(f, row) for f, row in self.followers.rows(author_id) if f > after][:limit]
        following = [(f, row) for f, row in rows if row.get("following")]
        active = [(f, row) for f, row in following
                  if seen_since is None or row.get("last_seen") is None or row["last_seen"] >= seen_since]
        over = {f: row["follows"] for f, row in active if row.get("follows", 0) > over_follows} if over_follows else {}
        return FollowerPage([f for f, _ in active], len(following) - len(active),
                            rows[-1][0] if len(rows) == limit else None, over)

    async def following(self, user_id: int, limit: int) -> list[int]:
        return [f for f, row in self.followings.rows(user_id) if row.get("following")][:limit]

    async def following_count(self, user_id: int) -> int:
        return sum(1 for _, row in self.followings.rows(user_id) if row.get("following"))

    async def set_edges_seen(self, user_id: int, followees: Iterable[int], last_seen: int, follows: int = 0) -> None:
        for author in followees:
            self.followers.write(author, user_id, {"last_seen": last_seen, **({"follows": follows} if follows else {})})

    # --- readers: static columns of the inbox partition; a set element is a cell of its own ------------

    async def reader_page(self, user_id: int, before: int | None, limit: int) -> ReaderPage:
        row = self.inboxes.row(user_id, STATIC) or {}
        return ReaderPage(Activity(row.get("last_seen"), bool(row.get("regenerating"))), row.get("sets_version"),
                          await self.inbox_head(user_id, before, limit), row.get("trimmed_below") or 0)

    async def reader_sets(self, user_id: int) -> ReaderSets:
        row = self.inboxes.row(user_id, STATIC) or {}
        celebrities = sorted(c[1] for c in row if isinstance(c, tuple) and c[0] == "celebrities")
        hidden = frozenset(c[1] for c in row if isinstance(c, tuple) and c[0] == "hidden")
        return ReaderSets(row.get("sets_version"), celebrities, hidden)

    async def reader_state(self, user_id: int) -> ReaderState:
        page, sets = await self.reader_page(user_id, None, 1), await self.reader_sets(user_id)
        return ReaderState(page.activity, sets.celebrities, sets.hidden)

    async def activity(self, user_id: int) -> Activity:
        return (await self.reader_page(user_id, None, 1)).activity

    async def activities(self, user_ids: Iterable[int]) -> dict[int, Activity]:
        found = {}
        for u in user_ids:
            activity, sets = await self.activity(u), await self.reader_sets(u)
            found[u] = Activity(activity.last_seen, activity.regenerating, sets.hidden)
        return found

    async def set_activity(self, user_id: int, activity: Activity) -> None:
        self.inboxes.write(user_id, STATIC, {"last_seen": activity.last_seen, "regenerating": activity.regenerating})

    async def celebrities(self, user_id: int) -> list[int]:
        return (await self.reader_sets(user_id)).celebrities

    def _new_version(self, user_id: int) -> None:
        """Every change of a reader's sets writes a new version, at the clock's time (always the newest)."""
        self.inboxes.write(user_id, STATIC, {"sets_version": uuid.uuid4()})

    async def add_celebrity(self, user_ids: Iterable[int], celebrity_id: int, version: int) -> int:
        users = list(user_ids)
        for u in users:
            self.inboxes.write(u, STATIC, {("celebrities", celebrity_id): True}, ts=version)
            self._new_version(u)
        return len(users)

    async def remove_celebrity(self, user_ids: Iterable[int], celebrity_id: int, version: int) -> int:
        users = list(user_ids)
        for u in users:
            self.inboxes.remove_element(u, STATIC, ("celebrities", celebrity_id), ts=version)
            self._new_version(u)
        return len(users)

    async def hide_author(self, user_id: int, author_id: int, event_time: int) -> None:
        self.inboxes.write(user_id, STATIC, {("hidden", author_id): True}, ts=event_time * 1000, ttl=self.ttl)
        self._new_version(user_id)

    async def unhide_author(self, user_id: int, author_id: int, event_time: int) -> None:
        self.inboxes.remove_element(user_id, STATIC, ("hidden", author_id), ts=event_time * 1000)
        self._new_version(user_id)

    async def hidden_authors(self, user_id: int) -> set[int]:
        return set((await self.reader_sets(user_id)).hidden)

    async def set_hidden(self, changes: Iterable[tuple[int, int, bool, int]]) -> None:
        for user, author, hidden, t in changes:
            await (self.hide_author(user, author, t) if hidden else self.unhide_author(user, author, t))

    async def set_celebrities(self, changes: Iterable[tuple[int, int, bool, int]]) -> None:
        for user, celeb, added, version in changes:
            change = self.add_celebrity if added else self.remove_celebrity
            await change([user], celeb, version)

    # --- inboxes ---------------------------------------------------------------------------------

    async def push_rows(self, rows: Iterable[tuple[int, int]], author_id: int) -> int:
        written = 0
        for user, post in rows:
            self.inboxes.write(user, post, {"author_id": author_id}, ttl=self.ttl, insert=True)
            written += 1
        return written

    async def inbox_head(self, user_id: int, before: int | None, limit: int) -> list[int]:
        return _head(self.inboxes, user_id, before, limit)

    async def trim_inbox(self, user_id: int, keep: int) -> int:
        ids = [pid for pid, _ in self.inboxes.rows(user_id, descending=True)]
        if len(ids) <= keep:
            return 0
        boundary = ids[keep - 1]
        for pid in ids[keep:]:  # the range tombstone, as the rows it shadows
            self.inboxes.delete(user_id, pid)
        self.inboxes.write(user_id, STATIC, {"trimmed_below": boundary}, ts=boundary)  # the higher boundary wins
        return len(ids) - keep

    async def purge_inbox(self, user_id: int, author_id: int, as_of_us: int) -> int:
        doomed = [pid for pid, row in self.inboxes.rows(user_id) if row.get("author_id") == author_id]
        for pid in doomed:
            self.inboxes.delete(user_id, pid, ts=as_of_us)
        return len(doomed)


def _head(table: Table, part: int, before: int | None, limit: int) -> list[int]:
    bound = before or MAX_ID
    out: list[int] = []
    for clust, _ in table.rows(part, descending=True):
        if clust < bound:
            out.append(clust)
            if len(out) == limit:
                break
    return out
