"""The bare-driver benchmark on the real Cassandra, at a small size: its result is complete and consistent.

Nothing here is about speed: a shared 2-core machine makes any figure noise. It checks that every shape x
window x protocol was measured or has its error recorded, that the figures add up, and that the
benchmark's keyspace is gone afterwards.
"""

from __future__ import annotations

import itertools

import pytest
from rich.progress import Progress

from bench.driver import PROTOCOLS, ROWS_PER_POST, SHAPES, connect, driver_limits, table
from fanout.settings import Settings

pytestmark = pytest.mark.e2e

ROWS = 2_000
WINDOWS = (32,)


def test_driver_limits_is_complete_and_consistent(stack: Settings, unique: str) -> None:
    keyspace = f"driver_{unique}"
    with Progress(disable=True) as progress:
        result = driver_limits(stack, rows=ROWS, seconds_cap=30, windows=WINDOWS, progress=progress,
                               keyspace=keyspace, reads=500)
        assert progress.tasks[0].completed == progress.tasks[0].total

    inserts = result["inserts"]
    assert {(e["shape"], e["protocol"], e["window"]) for e in inserts} == {
        (shape, protocol, window) for (shape, _), protocol, window in itertools.product(SHAPES, PROTOCOLS, WINDOWS)
    }
    assert len(inserts) == len(SHAPES) * len(PROTOCOLS) * len(WINDOWS)
    successes = [e for e in inserts if "error" not in e]
    assert any(e["protocol"] == 4 for e in successes), "protocol v4 is what the pipeline uses: it must work"
    for e in successes:
        assert e["rows"] == ROWS, e  # far below the cap: every row was written
        assert e["rows_per_s"] > 0 and e["seconds"] > 0 and e["cpu_ms_per_1000_rows"] > 0, e
        # "seconds" is rounded to the millisecond, rows_per_s is not
        assert e["rows"] / (e["seconds"] + 0.0005) - 1 <= e["rows_per_s"] <= e["rows"] / (e["seconds"] - 0.0005) + 1
    for e in inserts:
        assert "error" in e or "rows_per_s" in e
        if "error" in e:
            assert isinstance(e["error"], str) and e["error"]
    assert result["best_insert"] is not None
    assert result["best_insert"]["rows_per_s"] == max(e["rows_per_s"] for e in successes)
    assert result["best_insert"] in successes

    floors = result["post_rows"]
    assert [e["rows_per_post"] for e in floors] == list(ROWS_PER_POST)
    for e in floors:
        assert "error" not in e, e
        # the pipeline's request shape: its batch size and window, protocol v4
        assert (e["protocol"], e["window"], e["batch"]) == (4, stack.write_window, stack.inbox_batch_size)
        assert e["rows"] == ROWS and e["rows_per_s"] > 0 and e["cpu_ms_per_1000_rows"] > 0, e

    bridge = result["bridge_single_v4"]
    assert "error" not in bridge, bridge
    assert (bridge["shape"], bridge["protocol"], bridge["window"]) == ("single", 4, stack.write_window)
    assert bridge["rows"] == ROWS and bridge["rows_per_s"] > 0

    for key, factory in (("reads", "tuple_factory"), ("reads_named_tuple", "named_tuple_factory")):
        reads = result[key]
        assert "error" not in reads, reads
        assert reads["row_factory"] == factory
        assert reads["reads"] == 500 and reads["reads_per_s"] > 0
        assert 0 < reads["p50_ms"] <= reads["p99_ms"]

    assert table(result).row_count == len(inserts) + len(floors) + 1

    cluster, session = connect(stack, 4)
    try:
        left = session.execute("SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name = %s",
                               (keyspace,))
        assert list(left) == []
    finally:
        cluster.shutdown()
