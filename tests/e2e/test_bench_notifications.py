"""`fanout bench notifications` at a small size, on the real stack: it measures delivery and checks every count.
A module of its own: its processes take the default ports, which a module deployment would hold."""

from __future__ import annotations

from pathlib import Path

from bench import notifications as bench_notifications
from bench.scenario import scenarios_dropped
from fanout.settings import Settings


def test_the_notifications_benchmark_measures_delivery_and_checks_every_count(stack: Settings, tmp_path: Path) -> None:
    with scenarios_dropped():
        result = bench_notifications.bench(stack, rate=20, seconds=3, followers=500, burst_posts=50, n_flood=1000,
                                           hot=100, log_dir=tmp_path / "logs")
    for run in ("quiet", "burst"):
        assert result[run]["probes"] >= 2 and 0 < result[run]["probe_p50_ms"] <= result[run]["probe_p99_ms"]
    assert result["burst"]["worker_lag_at_end"] >= 0  # measured (at this size the burst may be gone already)
    flood = result["flood"]
    assert flood["likes"] == 1000 and flood["counts_checked"] == flood["posts"] > 1 and flood["likes_per_s"] > 0
    assert 1 <= flood["rows_written_per_like"] < 2.5
    text = bench_notifications.report({"command": "fanout bench notifications", "commit": "abc1234", **result},
                                      tmp_path)
    assert "| quiet | 20 |" in text and (tmp_path / "notifications.png").stat().st_size > 0
