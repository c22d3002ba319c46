"""The read service's caches (fanout/read/read_cache.py) over the in-memory adapter: no servers."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import Sequence

from clocks import ManualClock

from fanout.adapters.memory import MemoryStorage
from fanout.core.ids import PostIdGenerator, millis_of
from fanout.core.model import Post, Tier
from fanout.core.ports import PostStore, Stores
from fanout.metrics import Metrics
from fanout.read.feed import home_feed
from fanout.read.read_cache import POST_OVERHEAD_BYTES, CachedPosts
from fanout.read.reader_cache import ReaderSetsCache
from fanout.settings import Settings

SETTINGS = Settings.load(env={})
_ids = PostIdGenerator(node=7)


class Counting:
    """A PostStore that counts its reads and can be slowed down, to see what the cache saves."""

    def __init__(self, store: PostStore, delay: float = 0.0) -> None:
        self.store = store
        self.delay = delay
        self.calls: Counter[str] = Counter()
        self.asked: list[int] = []

    async def posts(self, post_ids: Sequence[int]) -> dict[int, Post]:
        self.calls["posts"] += 1
        self.asked.extend(post_ids)
        await asyncio.sleep(self.delay)
        return await self.store.posts(post_ids)

    async def timeline_head(self, author_id: int, before: int | None, limit: int) -> list[int]:
        self.calls["timeline_head"] += 1
        await asyncio.sleep(self.delay)
        return await self.store.timeline_head(author_id, before, limit)



async def world(delay: float = 0.0, **kw: float) -> tuple[Stores, Counting, CachedPosts, ManualClock]:
    stores = MemoryStorage(SETTINGS).stores()
    counting = Counting(stores.posts, delay)
    clock = ManualClock(1000.0)
    options = {"post_cache_mb": 1, "post_ttl_s": 60.0, "head_size": 5, "head_ttl_ms": 2000, **kw}
    cache = CachedPosts(counting, Metrics(), clock=clock, **options)  # type: ignore[arg-type]
    return stores, counting, cache, clock


async def post(stores: Stores, author: int, body: str = "x") -> int:
    pid = _ids.next_id()
    await stores.posts.save_post(pid, author, body, Tier.PULL)
    return pid


async def test_a_post_is_read_from_cassandra_once_until_its_ttl() -> None:
    stores, counting, cache, clock = await world()
    pid = await post(stores, 1)
    for _ in range(3):
        assert list(await cache.posts([pid])) == [pid]
    assert counting.calls["posts"] == 1
    clock.now += 61
    await cache.posts([pid])
    assert counting.calls["posts"] == 2


async def test_concurrent_misses_of_one_post_share_one_request() -> None:
    stores, counting, cache, _ = await world(delay=0.01)
    pid = await post(stores, 1)
    results = await asyncio.gather(*(cache.posts([pid]) for _ in range(10)))
    assert all(list(r) == [pid] for r in results)
    assert counting.calls["posts"] == 1


async def test_memory_is_bounded_and_the_least_recently_used_posts_go_first() -> None:
    stores, counting, cache, _ = await world(post_cache_mb=1)
    body = "b" * 10_000
    pids = [await post(stores, 1, body) for _ in range(150)]  # ~1.5 MB of bodies
    await cache.posts(pids[:100])
    await cache.posts(pids[:1])  # the oldest, used again
    await cache.posts(pids[100:])
    assert cache.cached_bytes <= 1024 * 1024
    counting.asked.clear()
    await cache.posts([pids[0], pids[149]])
    assert counting.asked == []  # both kept: one recently used, one just read
    await cache.posts([pids[1]])
    assert counting.asked == [pids[1]]  # evicted
    assert cache.cached_bytes >= 90 * (10_000 + POST_OVERHEAD_BYTES)


async def test_only_the_authors_delete_update_hides_a_cached_post() -> None:
    stores, _, cache, _ = await world()
    pid = await post(stores, 1)
    await cache.posts([pid])
    cache.removed(pid, author_id=2)
    assert not (await cache.posts([pid]))[pid].deleted
    cache.removed(pid, author_id=1)
    assert (await cache.posts([pid]))[pid].deleted


async def test_a_delete_update_during_a_fetch_is_not_undone_by_the_fetch() -> None:
    stores, _, cache, _ = await world(delay=0.02)
    pid = await post(stores, 1)
    fetching = asyncio.ensure_future(cache.posts([pid]))  # reads the post before the delete is applied
    await asyncio.sleep(0.005)
    cache.removed(pid, author_id=1)
    await fetching
    assert (await cache.posts([pid]))[pid].deleted


async def test_a_timeline_head_is_read_once_per_ttl_however_many_readers() -> None:
    stores, counting, cache, clock = await world(delay=0.005)
    pids = [await post(stores, 9) for _ in range(3)]
    heads = await asyncio.gather(*(cache.timeline_heads([9], None, 3) for _ in range(20)))
    assert all(h == [pids[::-1]] for h in heads)
    assert counting.calls["timeline_head"] == 1
    clock.now += 2.5
    await cache.timeline_heads([9], None, 3)
    assert counting.calls["timeline_head"] == 2


async def test_a_stored_update_extends_a_cached_head_at_once() -> None:
    stores, counting, cache, _ = await world()
    old = await post(stores, 9)
    assert await cache.timeline_head(9, None, 5) == [old]
    new = await post(stores, 9)
    cache.stored(new, 9, Tier.PULL)
    cache.stored(new, 9, Tier.PULL)  # a duplicate update changes nothing
    assert await cache.timeline_head(9, None, 5) == [new, old]
    assert counting.calls["timeline_head"] == 1


async def test_pages_below_the_cached_head_come_from_cassandra() -> None:
    stores, counting, cache, _ = await world(head_size=5)
    pids = [await post(stores, 9) for _ in range(8)][::-1]  # newest first
    assert await cache.timeline_head(9, None, 3) == pids[:3]
    assert await cache.timeline_head(9, pids[1], 3) == pids[2:5]  # still within the 5 cached
    assert counting.calls["timeline_head"] == 1
    assert await cache.timeline_head(9, pids[4], 3) == pids[5:8]  # reaches below them
    assert counting.calls["timeline_head"] == 2


async def test_a_reader_following_250_celebrities_gets_every_ones_posts() -> None:
    stores, _, cache, _ = await world(head_size=5)
    reader = 1
    celebrities = list(range(1000, 1250))
    newest = {}
    for n, celeb in enumerate(celebrities):
        await stores.readers.add_celebrity([reader], celeb, version=1)
        newest[celeb] = await post(stores, celeb, f"post of {celeb}")
        if n % 50 == 0:
            await post(stores, celeb)  # some have more than one
    cached = dataclasses.replace(stores, posts=cache)
    seen: list[int] = []
    before = None
    while True:
        page = (await home_feed(cached, SETTINGS, reader, 100, before, millis_of(_ids.next_id()))).page
        seen.extend(p.post_id for p in page.items)
        if page.next_cursor is None:
            break
        before = page.next_cursor
    assert set(newest.values()) <= set(seen)
    assert len(seen) == len(set(seen)) == 250 + 5 and seen == sorted(seen, reverse=True)


async def test_a_readers_sets_are_read_again_only_when_their_version_changes() -> None:
    stores, _, _, clock = await world()
    reads = Counter[str]()

    class CountingReaders:
        async def reader_sets(self, user_id: int) -> object:
            reads["sets"] += 1
            return await stores.readers.reader_sets(user_id)

    cache = ReaderSetsCache(CountingReaders(), Metrics(), ttl_s=600, clock=clock)  # type: ignore[arg-type]
    assert (await cache.sets(5, None)).celebrities == [] and reads["sets"] == 1  # no version yet: read once
    assert (await cache.sets(5, None)).celebrities == [] and reads["sets"] == 1
    await stores.readers.add_celebrity([5], 77, 1)
    version = (await stores.readers.reader_page(5, None, 1)).sets_version
    for _ in range(3):
        assert (await cache.sets(5, version)).celebrities == [77]
    assert reads["sets"] == 2
    await stores.readers.add_celebrity([5], 78, 2)
    version = (await stores.readers.reader_page(5, None, 1)).sets_version
    assert (await cache.sets(5, version)).celebrities == [77, 78]
    assert reads["sets"] == 3
    clock.now += 601
    await cache.sets(5, version)
    assert reads["sets"] == 4
