"""The read service's in-process caches: post bodies, and author timeline heads shared by every reader.

`CachedPosts` wraps a PostStore and answers what feed reads ask of it from memory:
- Post bodies: posts are immutable but for the delete flag. A cached post is served until it is evicted
  (least recently used first, bounded by FANOUT_POST_CACHE_MB) or older than FANOUT_POST_CACHE_TTL_S.
  Deletes reach the cache at once through the worker's feed updates (`removed`), so a deleted post
  disappears within the time the worker takes to apply the delete; the TTL bounds staleness if an
  update is missed (a restart of the update listener, a lost connection).
- Timeline heads: the newest FANOUT_HEAD_CACHE_SIZE post ids of an author, read from Cassandra at most
  once per FANOUT_HEAD_TTL_MS per process however many followers read it (a celebrity's timeline is the
  hottest key of a feed system), with concurrent misses sharing one request. New posts are added at once
  from the feed updates (`stored`), so the TTL only bounds a missed update. A page deeper than the cached
  head is read from Cassandra and not cached.
Misses of concurrent reads for the same post or author share one request (single flight).

A reader's own state (their sets, the head of their inbox) is cached in fanout/read/reader_cache.py.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fanout.core.model import Post, StoredPost, Tier
from fanout.core.ports import PostStore
from fanout.metrics import Metrics

POST_OVERHEAD_BYTES = 250  # a Post object, its entry and its id, beside the body's characters


@dataclass
class _Head:
    neg_ids: list[int]  # the cached post ids, negated: ascending, so bisect finds "ids below a cursor"
    complete: bool  # the author has no more posts than these
    fetched: float


class CachedPosts:
    """A PostStore whose reads come from memory where they can; writes pass through."""

    def __init__(self, store: PostStore, metrics: Metrics, *, post_cache_mb: int, post_ttl_s: float,
                 head_size: int, head_ttl_ms: int, max_heads: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.metrics = metrics
        self.max_bytes = post_cache_mb * 1024 * 1024
        self.post_ttl = post_ttl_s
        self.head_size = head_size
        self.head_ttl = head_ttl_ms / 1000
        self.max_heads = max_heads
        self.clock = clock
        self._posts: OrderedDict[int, tuple[Post, float]] = OrderedDict()
        self._bytes = 0
        self._removed: OrderedDict[int, int] = OrderedDict()  # post id -> claimed author, recent deletes
        self._heads: OrderedDict[int, _Head] = OrderedDict()
        self._post_flights: dict[int, asyncio.Future[Post | None]] = {}
        self._head_flights: dict[int, asyncio.Future[_Head]] = {}

    # --- post bodies -------------------------------------------------------------------------------

    async def posts(self, post_ids: Sequence[int]) -> dict[int, Post]:
        now = self.clock()
        found: dict[int, Post] = {}
        waiting: dict[int, asyncio.Future[Post | None]] = {}
        missing: list[int] = []
        for pid in post_ids:
            hit = self._posts.get(pid)
            if hit is not None and now - hit[1] < self.post_ttl:
                self._posts.move_to_end(pid)
                found[pid] = hit[0]
            elif pid in self._post_flights:
                waiting[pid] = self._post_flights[pid]
            else:
                missing.append(pid)
        self.metrics.post_cache.labels("hit").inc(len(found))
        self.metrics.post_cache.labels("miss").inc(len(missing) + len(waiting))
        if missing:
            found.update(await self._fetch_posts(missing))
        for pid, flight in waiting.items():
            post = await flight
            if post is not None:
                found[pid] = post
        return found

    async def _fetch_posts(self, ids: list[int]) -> dict[int, Post]:
        loop = asyncio.get_running_loop()
        flights = {pid: loop.create_future() for pid in ids}
        self._post_flights.update(flights)
        try:
            fetched = await self.store.posts(ids)
        except BaseException as exc:
            for pid, f in flights.items():
                f.set_exception(exc)
                f.exception()  # retrieved: the caller of this fetch raises it
                self._post_flights.pop(pid, None)
            raise
        now = self.clock()
        found = {}
        for pid, flight in flights.items():
            post = fetched.get(pid)
            if post is not None:
                post = found[pid] = self._apply_removal(post)
                self._remember(post, now)
            self._post_flights.pop(pid, None)
            flight.set_result(post)
        return found

    def _remember(self, post: Post, now: float) -> None:
        old = self._posts.pop(post.post_id, None)
        if old is not None:
            self._bytes -= _size(old[0])
        self._posts[post.post_id] = (post, now)
        self._bytes += _size(post)
        while self._bytes > self.max_bytes and self._posts:
            _, (evicted, _) = self._posts.popitem(last=False)
            self._bytes -= _size(evicted)

    def _apply_removal(self, post: Post) -> Post:
        claimed = self._removed.get(post.post_id)
        if claimed is not None and claimed == post.author_id and not post.deleted:
            return Post(post.post_id, post.author_id, post.body, True)
        return post

    def removed(self, post_id: int, author_id: int) -> None:
        """A delete the worker applied. It counts only if claimed by the post's author (as in the store).
        Remembered for a while, so a fetch already in flight when it arrived cannot revive the post."""
        self._removed[post_id] = author_id
        self._removed.move_to_end(post_id)
        while len(self._removed) > 100_000:
            self._removed.popitem(last=False)
        hit = self._posts.get(post_id)
        if hit is not None:
            self._posts[post_id] = (self._apply_removal(hit[0]), hit[1])

    @property
    def cached_bytes(self) -> int:
        return self._bytes

    # --- timeline heads ----------------------------------------------------------------------------

    async def timeline_head(self, author_id: int, before: int | None, limit: int) -> list[int]:
        return (await self.timeline_heads([author_id], before, limit))[0]

    async def timeline_heads(self, author_ids: Sequence[int], before: int | None, limit: int) -> list[list[int]]:
        """Each author's newest ids below `before`: from memory when the cached head covers the request."""
        now = self.clock()
        out: list[list[int] | None] = []
        stale: dict[int, list[int]] = {}  # author -> positions in `out`
        for n, author in enumerate(author_ids):
            head = self._heads.get(author)
            if head is not None and now - head.fetched < self.head_ttl:
                out.append(self._slice(head, before, limit))
            else:
                out.append(None)
                stale.setdefault(author, []).append(n)
        self.metrics.head_cache.labels("hit").inc(len(author_ids) - len(stale))
        self.metrics.head_cache.labels("miss").inc(len(stale))
        if stale:
            heads = await asyncio.gather(*(self._refresh(a) for a in stale))
            for positions, head in zip(stale.values(), heads, strict=True):
                for n in positions:
                    out[n] = self._slice(head, before, limit)
        deep = [n for n, ids in enumerate(out) if ids is None]
        if deep:  # below the cached head: straight from Cassandra, not cached
            pages = await asyncio.gather(*(self.store.timeline_head(author_ids[n], before, limit) for n in deep))
            for n, page in zip(deep, pages, strict=True):
                out[n] = page
        return [ids or [] for ids in out]

    def _slice(self, head: _Head, before: int | None, limit: int) -> list[int] | None:
        start = 0 if before is None else bisect.bisect_right(head.neg_ids, -before)
        ids = head.neg_ids[start : start + limit]
        if len(ids) < limit and not head.complete:
            return None  # the request reaches below what is cached
        return [-i for i in ids]

    async def _refresh(self, author: int) -> _Head:
        flight = self._head_flights.get(author)
        if flight is not None:
            return await flight
        flight = asyncio.get_running_loop().create_future()
        self._head_flights[author] = flight
        try:
            ids = await self.store.timeline_head(author, None, self.head_size)
            head = _Head([-i for i in ids], len(ids) < self.head_size, self.clock())
            self._heads[author] = head
            self._heads.move_to_end(author)
            while len(self._heads) > self.max_heads:
                self._heads.popitem(last=False)
            flight.set_result(head)
            return head
        except BaseException as exc:
            flight.set_exception(exc)
            flight.exception()
            raise
        finally:
            self._head_flights.pop(author, None)

    def peek(self, post_id: int) -> Post | None:
        """The cached post, without a request (None if not cached)."""
        hit = self._posts.get(post_id)
        return hit[0] if hit is not None else None

    def stored(self, post_id: int, author_id: int, tier: Tier, body: str | None = None) -> None:
        """A post the worker stored: its body cached (when given), and its id on the cached head of its
        author."""
        if body is not None:
            self._remember(self._apply_removal(Post(post_id, author_id, body, False)), self.clock())
        head = self._heads.get(author_id)
        if head is not None and insert_newest(head.neg_ids, post_id, self.head_size):
            head.complete = False

    # --- writes pass through (the read service writes nothing; this keeps the PostStore shape) ---------

    async def latest_posts(self, author_id: int, limit: int) -> list[int]:
        return await self.store.latest_posts(author_id, limit)

    async def stored_post(self, post_id: int) -> StoredPost | None:
        return await self.store.stored_post(post_id)

    async def save_post(self, post_id: int, author_id: int, body: str, tier: Tier) -> None:
        await self.store.save_post(post_id, author_id, body, tier)

    async def mark_deleted(self, post_id: int, author_id: int, event_time: int) -> None:
        await self.store.mark_deleted(post_id, author_id, event_time)


def insert_newest(neg_ids: list[int], post_id: int, size: int) -> bool:
    """Put `post_id` in its place among cached ids, newest first (kept negated: ascending), keeping at most
    `size` of them. True if that cut the oldest off, so they are no longer all the ids there are."""
    at = bisect.bisect_left(neg_ids, -post_id)
    if at < len(neg_ids) and neg_ids[at] == -post_id:
        return False
    neg_ids.insert(at, -post_id)
    if len(neg_ids) > size:
        neg_ids.pop()
        return True
    return False


def _size(post: Post) -> int:
    return len(post.body) + POST_OVERHEAD_BYTES

