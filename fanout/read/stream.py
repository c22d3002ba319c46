"""Live feeds: each read process streams new feed items to the readers connected to it (Server-Sent Events).

Every read process already consumes the worker's feed updates for its caches (fanout/read/updates.py); the hub
routes the same updates to the connections it holds. Nothing is written per follower for readers who are
not connected, and any number of read processes and workers work together (each process sees every
update and serves its own connections):
- a pushed post (PostDelivered: the worker wrote it into these users' inboxes) goes to those users;
- a pulled post (PostStored, tier pull) goes to connected readers who follow its author;
- a delete (PostRemoved) goes to connected readers who follow its author, as a delete notice;
- FollowChanged keeps each connected reader's followees current;
- a notification group written by the notifier (NotificationChanged) goes to its owner, as `event: notification`.
Items go out in post id order: a connection holds what arrives for a short reorder window
(FANOUT_STREAM_REORDER_MS) and sends it sorted. The SSE id is the post id, so a client reconnecting with
Last-Event-ID is first sent the feed items newer than it (read like a page), then live ones, none twice.
An item arriving after the window with an id below one already sent is still sent, but without an id,
so that the client's Last-Event-ID never moves back (which would replay items on the next reconnect).

What one reader can hold is bounded: a user has at most FANOUT_STREAM_MAX_PER_USER streams and a process
FANOUT_STREAM_MAX_CONNECTIONS (`TooManyStreams`); a stream ends when its token expires (`event: reauth`);
a reader more than FANOUT_STREAM_QUEUE_ITEMS behind is dropped (`event: resume`: reconnect with the
Last-Event-ID it has, a bounded replay) and stops receiving the moment it overflows.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from fanout.core.clock import Clock, wall_ms
from fanout.core.events import FeedUpdate, FollowChanged, NotificationChanged, PostDelivered, PostRemoved, PostStored
from fanout.core.model import Post
from fanout.core.notifications import Group, describe
from fanout.metrics import Metrics
from fanout.read.feed import FeedPage
from fanout.read.read_cache import CachedPosts

SENT_MEMORY = 10_000  # ids a connection remembers having sent, to send none twice


@dataclass(frozen=True)
class StreamItem:
    post_id: int
    event: str  # "post", "delete" or "notification"
    data: dict[str, Any]
    event_time: int | None  # when the post was accepted (ms), for the lag metric; None: not a live item


def post_item(post: Post, via: str, event_time: int | None) -> StreamItem:
    return StreamItem(post.post_id, "post", {"post_id": post.post_id, "author_id": post.author_id,
                                             "created_at": post.created_at, "body": post.body, "via": via}, event_time)


def notification_item(u: NotificationChanged) -> StreamItem:
    """A notification group as it now is (`actors` 0: gone), in the shape of GET /v1/notifications' items."""
    g = Group(u.group_id, u.kind, u.target, u.actors, u.latest, u.first_at, u.updated_at)
    return StreamItem(u.group_id, "notification", {"id": u.group_id, "kind": u.kind, "target": u.target,
                                                   "actors": u.actors, "latest": list(u.latest),
                                                   "first_at": u.first_at, "updated_at": u.updated_at,
                                                   "text": describe(g) if u.actors else ""}, u.event_time)


class TooManyStreams(Exception):
    """A new stream would exceed the user's or the process's limit."""


@dataclass(eq=False)
class Connection:
    user_id: int
    followees: set[int]
    expires_ms: int  # the token's expiry: the stream ends then
    queue: asyncio.Queue[StreamItem]
    sent: OrderedDict[tuple[str, int], None] = field(default_factory=OrderedDict)
    last_id: int = 0  # the highest post id sent with an SSE id
    overflowed: bool = False

    def offer(self, item: StreamItem) -> bool:
        """Queue `item`; False once the reader is too far behind (the hub then drops the connection)."""
        if self.overflowed:
            return False
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.overflowed = True
            return False
        return True

    def remember(self, key: tuple[str, int]) -> bool:
        """False if this was sent already."""
        if key in self.sent:
            return False
        self.sent[key] = None
        if len(self.sent) > SENT_MEMORY:
            self.sent.popitem(last=False)
        return True


@dataclass(frozen=True)
class StreamLimits:
    per_user: int = 5
    connections: int = 10_000
    queue_items: int = 1_000


class StreamHub:
    def __init__(self, posts: CachedPosts, metrics: Metrics, reorder_ms: int, heartbeat_s: float,
                 clock_ms: Clock = wall_ms, limits: StreamLimits = StreamLimits()) -> None:
        self.posts = posts
        self.metrics = metrics
        self.reorder = reorder_ms / 1000
        self.heartbeat = heartbeat_s
        self.clock_ms = clock_ms
        self.limits = limits
        self.by_user: dict[int, set[Connection]] = {}
        self.by_followee: dict[int, set[Connection]] = {}
        self.connections = 0
        self._fetches: set[asyncio.Task[None]] = set()

    # --- connections -------------------------------------------------------------------------------

    def connect(self, user_id: int, followees: set[int], expires_ms: int) -> Connection:
        """A new stream of `user_id` until `expires_ms`; TooManyStreams past the user's or the process's
        limit."""
        if len(self.by_user.get(user_id, ())) >= self.limits.per_user:
            raise TooManyStreams(f"user {user_id} has {self.limits.per_user} live streams open here already")
        if self.connections >= self.limits.connections:
            raise TooManyStreams(f"this read process serves {self.limits.connections} live streams already")
        conn = Connection(user_id, set(followees), expires_ms, asyncio.Queue(self.limits.queue_items))
        self.by_user.setdefault(user_id, set()).add(conn)
        for author in conn.followees:
            self.by_followee.setdefault(author, set()).add(conn)
        self.connections += 1
        self.metrics.stream_connections.inc()
        return conn

    def disconnect(self, conn: Connection) -> None:
        """Idempotent: an overflowed connection is unrouted at once, and disconnected again when it ends."""
        conns = self.by_user.get(conn.user_id)
        if conns is None or conn not in conns:
            return
        _discard(self.by_user, conn.user_id, conn)
        for author in conn.followees:
            _discard(self.by_followee, author, conn)
        self.connections -= 1
        self.metrics.stream_connections.dec()

    def _offer(self, conns: list[Connection], item: StreamItem) -> None:
        for conn in conns:
            if not conn.offer(item):
                self.disconnect(conn)  # no more routing to it: its memory stays bounded

    # --- routing updates (on the event loop, from the updates listener) -------------------------------

    def apply(self, update: FeedUpdate) -> None:
        if isinstance(update, PostDelivered):
            targets = [c for u in update.user_ids for c in self.by_user.get(u, ())]
            self._offer_post(update.post_id, "inbox", update.event_time, targets)
        elif isinstance(update, PostStored):
            if update.tier == "pull":
                self._offer_post(update.post_id, "timeline", update.event_time,
                                 list(self.by_followee.get(update.author_id, ())))
        elif isinstance(update, PostRemoved):
            notice = StreamItem(update.post_id, "delete", {"post_id": update.post_id}, update.event_time)
            self._offer(list(self.by_followee.get(update.author_id, ())), notice)
        elif isinstance(update, NotificationChanged):
            self._offer(list(self.by_user.get(update.owner, ())), notification_item(update))
        elif isinstance(update, FollowChanged):
            for conn in self.by_user.get(update.follower_id, ()):
                if update.following and update.followee_id not in conn.followees:
                    conn.followees.add(update.followee_id)
                    self.by_followee.setdefault(update.followee_id, set()).add(conn)
                elif not update.following and update.followee_id in conn.followees:
                    conn.followees.discard(update.followee_id)
                    _discard(self.by_followee, update.followee_id, conn)

    def _offer_post(self, post_id: int, via: str, event_time: int, targets: list[Connection]) -> None:
        if not targets:
            return
        post = self.posts.peek(post_id)  # the PostStored update before this one brought the body
        if post is not None:
            if not post.deleted:
                self._offer(targets, post_item(post, via, event_time))
            return
        task = asyncio.ensure_future(self._fetch_then_offer(post_id, via, event_time, targets))
        self._fetches.add(task)
        task.add_done_callback(self._fetches.discard)

    async def _fetch_then_offer(self, post_id: int, via: str, event_time: int, targets: list[Connection]) -> None:
        post = (await self.posts.posts([post_id])).get(post_id)
        if post is not None and not post.deleted:
            self._offer(targets, post_item(post, via, event_time))

    # --- one connection's SSE frames -----------------------------------------------------------------

    async def frames(self, conn: Connection, catch_up: list[StreamItem]) -> AsyncIterator[bytes]:
        """`catch_up` (items newer than the client's Last-Event-ID), then live items, as SSE frames."""
        yield b"retry: 2000\n\n"
        for frame in self._send(conn, sorted(catch_up, key=lambda i: i.post_id)):
            yield frame
        while True:
            if conn.overflowed:
                self.metrics.streams_ended.labels("overflow").inc()
                yield _notice("resume", "this reader fell too far behind: reconnect with its Last-Event-ID")
                return
            left = (conn.expires_ms - self.clock_ms()) / 1000
            if left <= 0:
                self.metrics.streams_ended.labels("token_expired").inc()
                yield _notice("reauth", "the bearer token has expired: reconnect with a new one")
                return
            try:
                first = await asyncio.wait_for(conn.queue.get(), min(self.heartbeat, left))
            except TimeoutError:
                if left > self.heartbeat:
                    yield b": heartbeat\n\n"
                continue
            await asyncio.sleep(self.reorder)
            batch = [first]
            while not conn.queue.empty():
                batch.append(conn.queue.get_nowait())
            for frame in self._send(conn, sorted(batch, key=lambda i: i.post_id)):
                yield frame

    def _send(self, conn: Connection, items: list[StreamItem]) -> list[bytes]:
        frames = []
        now = self.clock_ms()
        for item in items:
            # A notification group is sent again whenever it changes; a post or delete only once.
            if item.event != "notification" and not conn.remember((item.event, item.post_id)):
                continue
            head = b""
            if item.event == "post" and item.post_id > conn.last_id:
                conn.last_id = item.post_id
                head = b"id: %d\n" % item.post_id
            frames.append(head + b"event: " + item.event.encode() + b"\ndata: " + orjson.dumps(item.data) + b"\n\n")
            self.metrics.stream_items.labels(item.event).inc()
            if item.event_time is not None:
                self.metrics.stream_lag.observe(max(0.0, (now - item.event_time) / 1000))
        return frames


def _notice(event: str, message: str) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps({"error": message}) + b"\n\n"


def _discard(index: dict[int, set[Connection]], key: int, conn: Connection) -> None:
    conns = index.get(key)
    if conns is not None:
        conns.discard(conn)
        if not conns:
            del index[key]


async def catch_up_items(read_page: Callable[[int | None], Awaitable[FeedPage]], last_id: int,
                         max_pages: int = 1) -> list[StreamItem]:
    """Feed items newer than `last_id`, read page by page from the newest; at most `max_pages` pages (one,
    FANOUT_STREAM_REPLAY_ITEMS long, in the read service: every reconnect costs at most one feed read)."""
    items: list[StreamItem] = []
    cursor = None
    for _ in range(max_pages):
        page = await read_page(cursor)
        for post in page.items:
            if post.post_id <= last_id:
                return items
            items.append(post_item(post, "timeline" if post.post_id in page.pulled else "inbox", None))
        if page.next_cursor is None:
            return items
        cursor = page.next_cursor
    return items
