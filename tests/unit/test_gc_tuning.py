"""tune_gc: what exists at start is frozen, young collections are rarer, and every collection is timed."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from fanout.metrics import Metrics, sample, tune_gc


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold, callbacks = gc.get_threshold(), list(gc.callbacks)
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
        gc.callbacks[:] = callbacks


def test_tune_gc_freezes_raises_the_young_threshold_and_times_collections(restored_gc: None) -> None:
    metrics = Metrics()
    gc.unfreeze()
    tune_gc(metrics, 4321)
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold()[0] == 4321
    before = sample(metrics, "fanout_gc_pause_seconds_count", {"generation": "2"})
    gc.collect()
    assert sample(metrics, "fanout_gc_pause_seconds_count", {"generation": "2"}) == before + 1
