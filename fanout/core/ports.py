"""What the worker and the read service need from storage, as protocols (ports).

Two adapters implement every port: `fanout.adapters.cassandra` (the product) and `fanout.adapters.memory`
(fast unit tests). tests/contract runs one suite against both, so the fake stays honest.

Writes are idempotent: the same call twice leaves the same state. Calls that carry an event time are
last-writer-wins by it (a stale call cannot undo a newer one). Batching, windows of requests in flight
and TTLs are the adapter's business, set from Settings when it is built.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol

from fanout.core.model import (
    Activity,
    AuthorStats,
    Edge,
    EdgeChange,
    FollowerPage,
    KeyRecord,
    Post,
    ReaderPage,
    ReaderSets,
    ReaderState,
    StoredPost,
    Tier,
)
from fanout.core.notifications import NotificationPage, TargetChange, TargetState

_bulk_work: ContextVar[bool] = ContextVar("bulk_work", default=False)


@contextmanager
def bulk_work() -> Iterator[None]:
    """The writes made inside (and by tasks started inside) may wait for the event path's own: the inbox rows
    of a big fan-out's chunk tasks. A store may then keep fewer of them in flight while an event's writes
    are, so a post to a few followers is not queued behind thousands of rows of someone else's."""
    token = _bulk_work.set(True)
    try:
        yield
    finally:
        _bulk_work.reset(token)


def is_bulk_work() -> bool:
    return _bulk_work.get()


class PostStore(Protocol):
    """Posts by id and each author's timeline (every post of an author, newest first)."""

    async def stored_post(self, post_id: int) -> StoredPost | None:
        """The author and the tier decided for the post when it was first stored; None for a post not
        stored yet."""
        ...

    async def save_post(self, post_id: int, author_id: int, body: str, tier: Tier) -> None:
        """The post and its timeline entry."""
        ...

    async def mark_deleted(self, post_id: int, author_id: int, event_time: int) -> None:
        """Record a delete claimed by `author_id`; it hides the post only if that is the post's author.
        Claims accumulate (a set, not a last-writer-wins cell): nothing arriving later, a create's replay
        or another claim, ever brings the post back. A claim may arrive before its post."""
        ...

    async def posts(self, post_ids: Sequence[int]) -> dict[int, Post]:
        """The stored posts among `post_ids` (missing ids are left out)."""
        ...

    async def latest_posts(self, author_id: int, limit: int) -> list[int]:
        """The author's newest post ids, newest first (what a follow backfills): `timeline_head` from the
        newest, for the write path, where the reads of many authors at once are coalesced."""
        ...

    async def timeline_head(self, author_id: int, before: int | None, limit: int) -> list[int]:
        """The author's newest post ids below `before` (None: from the newest), newest first."""
        ...

    async def timeline_heads(self, author_ids: Sequence[int], before: int | None, limit: int) -> list[list[int]]:
        """`timeline_head` of each author, in the order given."""
        ...


class GraphStore(Protocol):
    """The follow graph: followers by author (with the author's count, tier and version), and the
    accounts each user follows."""

    async def author_stats(self, author_id: int) -> AuthorStats: ...

    async def edge(self, author_id: int, follower_id: int) -> Edge | None: ...

    async def edges(self, author_id: int, follower_ids: Iterable[int]) -> dict[int, Edge]:
        """The stored edges among these followers of the author (followers without one are left out)."""
        ...

    async def set_edge(self, author_id: int, follower_id: int, edge: Edge, stats: AuthorStats,
                       last_seen: int | None = None) -> None:
        """The edge and the author's stats, atomically (the commit point of a follow change)."""
        ...

    async def set_edges(self, author_id: int, changes: Sequence[EdgeChange], stats: AuthorStats) -> None:
        """Several edges of one author and its stats after them, atomically (the commit point of a run of
        follow changes). Each edge is last-writer-wins by its event time, as in `set_edge`."""
        ...

    async def set_following(self, user_id: int, followee_id: int, following: bool, event_time: int) -> None: ...

    async def set_followings(self, changes: Iterable[tuple[int, int, bool, int]]) -> None:
        """`set_following` for each (user, followee, following, event_time), together."""
        ...

    async def followers_page(self, author_id: int, after: int, limit: int,
                             seen_since: int | None = None, over_follows: int = 0) -> FollowerPage:
        """Up to `limit` followers with id > `after`; those last seen before `seen_since` are skipped
        (a follower never seen counts as active). With `over_follows`, the page also says how many accounts
        each active follower following more than that follows (FollowerPage.over_followers)."""
        ...

    async def following(self, user_id: int, limit: int) -> list[int]:
        """Accounts the user follows, in id order, at most `limit`."""
        ...

    async def following_count(self, user_id: int) -> int:
        """How many accounts the user follows (counted where the rows are: no row leaves the store)."""
        ...

    async def set_edges_seen(self, user_id: int, followees: Iterable[int], last_seen: int, follows: int = 0) -> None:
        """Copy the user's last feed read onto their edges, so fan-out knows they are active; and with
        `follows` (not 0), how many accounts they follow."""
        ...


class ReaderStore(Protocol):
    """What a feed read needs to know about its reader: activity, celebrities followed, hidden authors.
    Kept beside the reader's inbox, so that one request returns both."""

    async def reader_page(self, user_id: int, before: int | None, limit: int) -> ReaderPage:
        """The reader's activity and sets version, and up to `limit` inbox post ids below `before`."""
        ...

    async def reader_sets(self, user_id: int) -> ReaderSets:
        """The celebrity set and hidden authors, with their version (a new one with every change)."""
        ...

    async def reader_state(self, user_id: int) -> ReaderState: ...

    async def activity(self, user_id: int) -> Activity: ...

    async def activities(self, user_ids: Iterable[int]) -> dict[int, Activity]:
        """The activity of each of these users (`Activity(None, False)` for one never recorded), with the
        authors each hides."""
        ...

    async def set_activity(self, user_id: int, activity: Activity) -> None: ...

    async def celebrities(self, user_id: int) -> list[int]:
        """Every celebrity the user follows (never truncated: reads merge them all)."""
        ...

    async def add_celebrity(self, user_ids: Iterable[int], celebrity_id: int, version: int) -> int:
        """Add to these users' celebrity sets, written at the author's `version` so that set changes
        follow the order of the author's decisions; returns how many rows were written."""
        ...

    async def remove_celebrity(self, user_ids: Iterable[int], celebrity_id: int, version: int) -> int: ...

    async def hide_author(self, user_id: int, author_id: int, event_time: int) -> None:
        """Hide the author's posts from the user's feed (an unfollow), until the inbox TTL has passed."""
        ...

    async def unhide_author(self, user_id: int, author_id: int, event_time: int) -> None: ...

    async def hidden_authors(self, user_id: int) -> set[int]: ...

    async def set_hidden(self, changes: Iterable[tuple[int, int, bool, int]]) -> None:
        """`hide_author` or `unhide_author` for each (user, author, hidden, event_time), together."""
        ...

    async def set_celebrities(self, changes: Iterable[tuple[int, int, bool, int]]) -> None:
        """`add_celebrity` or `remove_celebrity` for each (user, celebrity, added, version), together."""
        ...


class InboxStore(Protocol):
    """Inboxes: post ids pushed to each user, newest first, expiring after the inbox TTL."""

    async def push_rows(self, rows: Iterable[tuple[int, int]], author_id: int) -> int:
        """Write (user, post) rows of one author's posts; returns rows written."""
        ...

    async def inbox_head(self, user_id: int, before: int | None, limit: int) -> list[int]: ...

    async def trim_inbox(self, user_id: int, keep: int) -> int:
        """Delete the rows below the user's `keep` newest and raise the inbox's `trimmed_below` (ReaderPage) to
        the oldest row kept. Returns rows deleted."""
        ...

    async def purge_inbox(self, user_id: int, author_id: int, as_of_us: int) -> int:
        """Delete the author's rows from the user's inbox as of `as_of_us` (µs): rows written later (a
        follow again) survive. Returns rows deleted."""
        ...


class IdempotencyStore(Protocol):
    """Idempotency keys of the ingest API, per (user, key), expiring after FANOUT_IDEMPOTENCY_TTL_SECONDS
    from their last write. Every write is a compare-and-set (Cassandra: a lightweight transaction), so
    replicas racing on one key agree on one owner."""

    async def claim(self, user_id: int, key: str, record: KeyRecord) -> KeyRecord | None:
        """Store `record` if the key is free: None when this call now owns the key, else what it holds."""
        ...

    async def record(self, user_id: int, key: str) -> KeyRecord | None:
        """What the key holds (None: free or expired), as of every claim and replace that returned."""
        ...

    async def replace(self, user_id: int, key: str, claimed_until: int, record: KeyRecord) -> bool:
        """Overwrite the key's record with `record` if its `claimed_until` is still the one given."""
        ...


class NotificationStore(Protocol):
    """Notification feeds (fanout/core/notifications.py): per (owner, kind, target) the set of its actors
    and its open group; per owner the groups, newest first, and how far the owner has read them. Groups
    expire FANOUT_NOTIFICATION_RETENTION_DAYS after they opened; the actor sets (a post's likes) do not."""

    async def target_state(self, owner: int, kind: str, target: int, actors: Collection[int]) -> TargetState:
        """The stored state a run of notices of `actors` on (owner, kind, target) starts from."""
        ...

    async def apply(self, owner: int, kind: str, target: int, change: TargetChange) -> None:
        """Write `change` atomically: its members, count, open group and groups land together or not at all."""
        ...

    async def notification_page(self, owner: int, before: int | None, limit: int) -> NotificationPage:
        """The owner's groups, newest first, below the group id `before` (None: from the newest)."""
        ...

    async def unread_count(self, owner: int, limit: int) -> int:
        """How many of the owner's groups are newer than what they read, counting up to `limit`."""
        ...

    async def mark_read(self, owner: int, up_to: int) -> None:
        """The owner has read every group up to the id `up_to`; a lower mark never undoes a higher one."""
        ...

    async def read_mark(self, owner: int) -> int:
        """The id up to which the owner has read their groups (0: none)."""
        ...

    async def actors(self, owner: int, kind: str, target: int, actor: int) -> tuple[int, bool]:
        """How many actors (owner, kind, target) has (a post's likes), and whether `actor` is one of them."""
        ...


@dataclass(frozen=True)
class Stores:
    """One adapter's implementation of every port, handed to the pipeline and the read service."""

    posts: PostStore
    graph: GraphStore
    readers: ReaderStore
    inboxes: InboxStore
    notifications: NotificationStore
