"""Readers' first pages from memory (fanout/read/reader_cache.py) over the in-memory adapter: the cached page is
the stored one after any sequence of deliveries, follow changes and reads, and only what the worker's
updates cannot replay goes back to the store."""

from __future__ import annotations

import asyncio
from collections import Counter

from clocks import ManualClock
from hypothesis import given, settings
from hypothesis import strategies as st

from fanout.adapters.memory import MemoryStorage
from fanout.core.model import Activity, ReaderPage
from fanout.core.ports import ReaderStore, Stores
from fanout.metrics import Metrics
from fanout.read.reader_cache import ReaderPages
from fanout.settings import Settings

SETTINGS = Settings.load(env={})
READER = 5


class CountingReaders:
    """The reader store's first-page read, counted, and slowed down on demand."""

    def __init__(self, readers: ReaderStore) -> None:
        self.readers = readers
        self.calls: Counter[int | None] = Counter()  # by cursor
        self.gate: asyncio.Event | None = None

    async def reader_page(self, user_id: int, before: int | None, limit: int) -> ReaderPage:
        self.calls[before] += 1
        page = await self.readers.reader_page(user_id, before, limit)
        if self.gate is not None:
            await self.gate.wait()
        return page



def world(max_readers: int = 100, keep: bool = True) -> tuple[Stores, CountingReaders, ReaderPages, ManualClock]:
    stores = MemoryStorage(SETTINGS).stores()
    counting = CountingReaders(stores.readers)
    clock = ManualClock(1000.0)
    pages = ReaderPages(counting, Metrics(), ttl_ms=5000, max_readers=max_readers,  # type: ignore[arg-type]
                        keep=lambda page: keep, clock=clock)
    return stores, counting, pages, clock


async def deliver(stores: Stores, pages: ReaderPages, post_id: int, users: list[int], author: int = 9) -> None:
    """What the worker does (writes the rows) and then announces (the PostDelivered update)."""
    await stores.inboxes.push_rows([(u, post_id) for u in users], author)
    pages.delivered(post_id, users)


async def test_a_warm_first_page_is_read_from_memory_until_its_ttl() -> None:
    stores, counting, pages, clock = world()
    for pid in (10, 20, 30):
        await deliver(stores, pages, pid, [READER])
    await stores.readers.set_activity(READER, Activity(123, False))
    first = await pages.reader_page(READER, None, 3)
    assert first == ReaderPage(Activity(123, False), None, [30, 20, 10])
    assert await pages.reader_page(READER, None, 3) == first
    assert await pages.reader_page(READER, None, 2) == ReaderPage(Activity(123, False), None, [30, 20])
    assert counting.calls[None] == 1
    assert (await pages.reader_page(READER, None, 4)).inbox == [30, 20, 10]  # more than cached: read
    assert counting.calls[None] == 2
    assert (await pages.reader_page(READER, None, 10)).inbox == [30, 20, 10]  # all there is: from memory
    assert counting.calls[None] == 2
    clock.now += 5.001
    await pages.reader_page(READER, None, 3)
    assert counting.calls[None] == 3


async def test_deliveries_go_on_the_cached_head_in_order_and_keep_its_size() -> None:
    stores, counting, pages, _ = world()
    for pid in (10, 20, 30, 40):
        await deliver(stores, pages, pid, [READER])
    assert (await pages.reader_page(READER, None, 3)).inbox == [40, 30, 20]
    await deliver(stores, pages, 35, [READER, 6])
    await deliver(stores, pages, 50, [READER])
    await deliver(stores, pages, 50, [READER])  # a replayed delivery
    await deliver(stores, pages, 5, [READER])  # older than the cached head: not on it
    assert (await pages.reader_page(READER, None, 3)).inbox == [50, 40, 35]
    assert counting.calls[None] == 1
    assert (await stores.readers.reader_page(READER, None, 3)).inbox == [50, 40, 35]


async def test_a_follow_change_drops_the_page_and_a_cursor_reads_through() -> None:
    stores, counting, pages, _ = world()
    await deliver(stores, pages, 10, [READER])
    await pages.reader_page(READER, None, 3)
    await stores.inboxes.push_rows([(READER, 15)], 8)  # a backfill: no delivery update
    pages.changed(READER)
    assert (await pages.reader_page(READER, None, 3)).inbox == [15, 10]
    assert counting.calls[None] == 2
    assert (await pages.reader_page(READER, 15, 3)).inbox == [10]
    assert (await pages.reader_page(READER, 15, 3)).inbox == [10]
    assert counting.calls[15] == 2


async def test_a_fetch_an_update_overtook_answers_its_read_but_is_not_cached() -> None:
    stores, counting, pages, _ = world()
    await deliver(stores, pages, 10, [READER])
    counting.gate = asyncio.Event()
    read = asyncio.ensure_future(pages.reader_page(READER, None, 3))
    await asyncio.sleep(0)  # the fetch has read [10] and waits
    await deliver(stores, pages, 20, [READER])  # arrives while the fetch is in flight
    counting.gate.set()
    assert (await read).inbox == [10]
    counting.gate = None
    assert (await pages.reader_page(READER, None, 3)).inbox == [20, 10]
    assert counting.calls[None] == 2


async def test_a_page_fetched_before_the_updates_are_listened_to_is_not_cached() -> None:
    stores = MemoryStorage(SETTINGS).stores()
    counting = CountingReaders(stores.readers)
    listening = False
    pages = ReaderPages(counting, Metrics(), ttl_ms=5000, max_readers=10,  # type: ignore[arg-type]
                        keep=lambda page: True, listening=lambda: listening)
    counting.gate = asyncio.Event()
    read = asyncio.ensure_future(pages.reader_page(READER, None, 3))
    await asyncio.sleep(0)
    listening = True  # the listener is assigned while the fetch is in flight
    counting.gate.set()
    await read
    counting.gate = None
    await pages.reader_page(READER, None, 3)
    await pages.reader_page(READER, None, 3)
    assert counting.calls[None] == 2


async def test_pages_that_may_not_be_kept_are_not_and_the_oldest_reader_is_evicted() -> None:
    stores, counting, pages, _ = world(keep=False)
    await pages.reader_page(READER, None, 3)
    await pages.reader_page(READER, None, 3)
    assert counting.calls[None] == 2 and len(pages) == 0
    stores, counting, pages, _ = world(max_readers=2)
    for user in (1, 2, 1, 3):  # 2 is the least recently read when 3 comes
        await pages.reader_page(user, None, 3)
    assert len(pages) == 2
    await pages.reader_page(1, None, 3)
    await pages.reader_page(3, None, 3)
    assert counting.calls[None] == 3
    await pages.reader_page(2, None, 3)
    assert counting.calls[None] == 4


ops = st.lists(st.one_of(
    st.tuples(st.just("deliver"), st.integers(1, 60), st.lists(st.integers(1, 3), min_size=1, max_size=3)),
    st.tuples(st.just("backfill"), st.integers(1, 60), st.integers(1, 3)),
    st.tuples(st.just("read"), st.integers(1, 3), st.integers(1, 6)),
), max_size=40)


@settings(max_examples=200, deadline=None)
@given(ops)
def test_the_cached_first_page_is_always_the_stored_one(steps: list[tuple[str, int, object]]) -> None:
    async def run() -> None:
        stores, _, pages, _ = world()
        for op, a, b in steps:
            if op == "deliver":
                await deliver(stores, pages, a, b)  # type: ignore[arg-type]
            elif op == "backfill":  # rows the worker announces only as a follow change
                await stores.inboxes.push_rows([(b, a)], 8)  # type: ignore[list-item]
                pages.changed(b)  # type: ignore[arg-type]
            else:
                stored = await stores.readers.reader_page(a, None, b)  # type: ignore[arg-type]
                assert await pages.reader_page(a, None, b) == stored  # type: ignore[arg-type]

    asyncio.run(run())
