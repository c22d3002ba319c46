"""The read service's caches of each reader's own state: the first page of their feed's inputs (activity,
sets version, inbox head: what one Cassandra request returns), and their sets (celebrities followed, hidden
authors).

`ReaderPages` answers a reader's first page (no cursor) from memory while the cached page is younger than
FANOUT_READER_PAGE_TTL_MS, so a warm read of the head of a feed costs no Cassandra request at all, as in the
feed systems that keep home timelines in memory. The worker's feed updates keep it current:
- PostDelivered: the worker wrote the post into these users' inboxes; it goes on their cached heads too.
- FollowChanged: the follower's page is dropped. A follow backfills the inbox; an unfollow hides the author
  and changes the sets version. The next read fetches both.
- CelebritySetChanged: a tier switch changed these followers' celebrity sets (and, for a demotion,
  backfilled their inboxes): their pages are dropped.
Deletes need nothing here: the post cache marks the post deleted and the read skips it. The TTL bounds a
missed update, and what no update announces (an inbox row expiring). A fetch during which an update for
its reader arrived answers its read but is not cached, since it may predate the update. Returning readers'
pages are not cached: the worker is about to rebuild their inbox and change their activity. Nor are pages
fetched before the read service's update listener reads every partition (fanout/read/updates.py).

`ReaderSetsCache` keeps each reader's celebrity set and hidden authors under the version their inbox
partition carries: every read learns the current version with its inbox head, so a cached set is used
only while it is the stored one (and re-read after FANOUT_READER_SETS_TTL_S, bounding a hidden author
whose entry expired with the inbox TTL).
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from fanout.core.model import Activity, ReaderPage, ReaderSets
from fanout.core.ports import ReaderStore
from fanout.metrics import Metrics
from fanout.read.read_cache import insert_newest


@dataclass(slots=True)
class _Page:
    activity: Activity
    sets_version: object | None
    neg_ids: list[int]  # the inbox head, negated: ascending, so bisect finds where a new id goes
    size: int  # the rows the fetch asked for
    complete: bool  # the inbox held fewer rows than that: these are all of them
    fetched: float
    trimmed_below: int  # the inbox's trim boundary when fetched (TTL-bounded, like the rest)

    def add(self, post_id: int) -> None:
        # A page that is not complete holds `size` ids, so an id older than all of them is cut off again.
        if insert_newest(self.neg_ids, post_id, self.size):
            self.complete = False


class ReaderPages:
    """Readers' first pages (ReaderStore.reader_page with no cursor) from memory; others pass through."""

    def __init__(self, readers: ReaderStore, metrics: Metrics, *, ttl_ms: int, max_readers: int,
                 keep: Callable[[ReaderPage], bool], listening: Callable[[], bool] = lambda: True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.readers = readers
        self.metrics = metrics
        self.ttl = ttl_ms / 1000
        self.max_readers = max_readers
        self.keep = keep  # whether a fetched page may be cached (not a returning reader's)
        # Whether every update from now on will arrive; asked when a fetch starts, since an update written
        # before the listener started may be missing from the page and would never be applied to it.
        self.listening = listening
        self.clock = clock
        self._pages: OrderedDict[int, _Page] = OrderedDict()
        self._fetching: Counter[int] = Counter()  # readers with a fetch in flight
        self._dirty: set[int] = set()  # of those, the readers an update reached meanwhile

    async def reader_page(self, user_id: int, before: int | None, limit: int) -> ReaderPage:
        if before is not None:  # below a cursor: a deeper page, read and not cached
            return await self.readers.reader_page(user_id, before, limit)
        hit = self._pages.get(user_id)
        if (hit is not None and self.clock() - hit.fetched < self.ttl
                and (hit.complete or len(hit.neg_ids) >= limit)):
            self._pages.move_to_end(user_id)
            self.metrics.reader_page_cache.labels("hit").inc()
            return ReaderPage(hit.activity, hit.sets_version, [-i for i in hit.neg_ids[:limit]], hit.trimmed_below)
        self.metrics.reader_page_cache.labels("miss").inc()
        listening = self.listening()
        self._fetching[user_id] += 1
        try:
            page = await self.readers.reader_page(user_id, None, limit)
        finally:
            self._fetching[user_id] -= 1
            dirty = user_id in self._dirty
            if not self._fetching[user_id]:
                del self._fetching[user_id]
                self._dirty.discard(user_id)
        if listening and not dirty and self.keep(page):
            self._pages[user_id] = _Page(page.activity, page.sets_version, [-i for i in page.inbox], limit,
                                         len(page.inbox) < limit, self.clock(), page.trimmed_below)
            self._pages.move_to_end(user_id)
            while len(self._pages) > self.max_readers:
                self._pages.popitem(last=False)
        return page

    def delivered(self, post_id: int, user_ids: Iterable[int]) -> None:
        """The worker pushed this post into these users' inboxes."""
        for user_id in user_ids:
            if user_id in self._fetching:
                self._dirty.add(user_id)
            page = self._pages.get(user_id)
            if page is not None:
                page.add(post_id)

    def changed(self, user_id: int) -> None:
        """The worker changed this reader's inbox or sets in a way the cache does not replay (a follow, a
        tier switch)."""
        self._pages.pop(user_id, None)
        if user_id in self._fetching:
            self._dirty.add(user_id)

    def __len__(self) -> int:
        return len(self._pages)


class ReaderSetsCache:
    def __init__(self, readers: ReaderStore, metrics: Metrics, ttl_s: float, max_readers: int = 200_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.readers = readers
        self.metrics = metrics
        self.ttl = ttl_s
        self.max_readers = max_readers
        self.clock = clock
        self._sets: OrderedDict[int, tuple[ReaderSets, float]] = OrderedDict()

    async def sets(self, user_id: int, version: object | None) -> ReaderSets:
        """The reader's sets at `version` (what their inbox partition says now). A null version (no set ever
        written through the adapter) is cached like any other, so even a bulk load that wrote sets without
        a version is read, once per FANOUT_READER_SETS_TTL_S."""
        hit = self._sets.get(user_id)
        now = self.clock()
        if hit is not None and hit[0].version == version and now - hit[1] < self.ttl:
            self._sets.move_to_end(user_id)
            self.metrics.reader_sets_cache.labels("hit").inc()
            return hit[0]
        self.metrics.reader_sets_cache.labels("miss").inc()
        sets = await self.readers.reader_sets(user_id)
        self._sets[user_id] = (sets, now)
        self._sets.move_to_end(user_id)
        while len(self._sets) > self.max_readers:
            self._sets.popitem(last=False)
        return sets

