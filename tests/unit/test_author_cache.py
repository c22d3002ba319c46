"""The worker's author stats cache (fanout/adapters/author_cache.py): exact while owned, forgotten on a
rebalance, never filled by a read or write that started before one."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from fanout.adapters.author_cache import AuthorStatsCache
from fanout.adapters.memory import MemoryStorage
from fanout.core.model import AuthorStats, Edge, EdgeChange
from fanout.metrics import Metrics
from fanout.settings import Settings
from fanout.write.faust_app import build_app
from fanout.write.pipeline import Pipeline


class CountingGraph(MemoryStorage):
    def __init__(self) -> None:
        super().__init__(Settings.load(env={}))
        self.reads = 0
        self.fail_writes = False

    async def author_stats(self, author_id: int) -> AuthorStats:
        self.reads += 1
        await asyncio.sleep(0)
        return await super().author_stats(author_id)

    async def set_edges(self, author_id: int, changes: object, stats: AuthorStats) -> None:  # type: ignore[override]
        await super().set_edges(author_id, changes, stats)  # type: ignore[arg-type]
        if self.fail_writes:  # applied, but the caller cannot know (a timeout)
            raise TimeoutError("no answer")


async def test_stats_are_read_once_then_kept_up_to_date_by_the_workers_own_commits() -> None:
    store = CountingGraph()
    cache = AuthorStatsCache(store)
    assert await cache.author_stats(1) == AuthorStats(0, False, 0)
    await cache.set_edges(1, [EdgeChange(5, Edge(True, 100))], AuthorStats(1, False, 7))
    assert await cache.author_stats(1) == AuthorStats(1, False, 7) == await store.author_stats(1)
    assert store.reads == 2 and (cache.hits, cache.misses) == (1, 1)  # the second is this test's own read


async def test_a_commit_that_failed_is_read_again() -> None:
    store = CountingGraph()
    cache = AuthorStatsCache(store)
    await cache.author_stats(1)
    store.fail_writes = True
    with pytest.raises(TimeoutError):
        await cache.set_edges(1, [EdgeChange(5, Edge(True, 100))], AuthorStats(1, False, 7))
    assert await cache.author_stats(1) == AuthorStats(1, False, 7)  # what the store holds, not the old entry
    assert store.reads == 2


async def test_a_read_that_started_before_a_rebalance_does_not_fill_the_cache() -> None:
    store = CountingGraph()
    cache = AuthorStatsCache(store)
    reading = asyncio.ensure_future(cache.author_stats(1))
    await asyncio.sleep(0)
    cache.clear()  # partitions moved while the read was in flight
    await reading
    await cache.author_stats(1)
    assert store.reads == 2


async def test_the_least_recently_used_entries_go_beyond_the_bound() -> None:
    store = CountingGraph()
    cache = AuthorStatsCache(store, max_authors=2)
    for author in (1, 2, 1, 3):  # 2 was used least recently when 3 came
        await cache.author_stats(author)
    assert store.reads == 3
    await cache.author_stats(1)
    assert store.reads == 3
    await cache.author_stats(2)
    assert store.reads == 4


async def test_a_rebalance_of_the_worker_clears_the_cache(tmp_path: Path) -> None:
    settings = Settings.load(env={}, worker_data_dir=tmp_path)
    storage = MemoryStorage(settings)
    cache = AuthorStatsCache(storage)
    app = build_app(settings, Metrics(),
                    lambda send, update: Pipeline(storage.stores(), settings, Metrics(), send, update),
                    on_rebalance=cache.clear)
    for signal in (app.on_partitions_revoked, app.on_partitions_assigned):
        await cache.set_edges(1, [EdgeChange(5, Edge(True, 100))], AuthorStats(1, False, 7))
        assert cache._stats
        await signal.send(set())
        assert not cache._stats
