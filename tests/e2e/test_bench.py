"""`fanout bench --quick` on the real stack: the report is complete and its counts add up. It asserts
nothing about speed (the machines are shared and noisy); the figures are for people to read."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fanout.settings import Settings

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def report(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> dict:  # type: ignore[type-arg]
    out = tmp_path_factory.mktemp("bench")
    subprocess.run([sys.executable, "-m", "services.cli", "bench", "--quick", "--out", str(out)], check=True,
                   env={**__import__("os").environ, **stack.to_env()}, timeout=600)
    data: dict = json.loads((out / "bench.json").read_text())  # type: ignore[type-arg]
    data["_out"] = str(out)
    return data


def test_every_strategy_and_the_driver_limits_are_reported(report: dict) -> None:  # type: ignore[type-arg]
    assert set(report["strategies"]) == {"hybrid", "push", "pull"}
    for name, s in report["strategies"].items():
        assert s["posts"] == report["workload"]["posts"], name
        assert set(s["cpu_s_per_1000_deliveries"]) == {"worker", "read-api", "cassandra", "kafka"}, name
        assert s["reads"]["all"]["n"] == report["workload"]["reads"], name
        assert s["reads"]["all"]["p50_ms"] <= s["reads"]["all"]["p99_ms"] <= s["reads"]["all"]["max_ms"], name
        assert s["celebrity_post_visible_ms"] == s["celebrity_post_visible_ms"], f"{name}: never visible"
    best = report["driver"]["best_insert"]
    assert best["rows_per_s"] == max(r["rows_per_s"] for r in report["driver"]["inserts"] if "rows_per_s" in r)
    assert report["driver"]["reads"]["reads_per_s"] > 0
    for plot in ("write_amplification.png", "read_latency.png", "lag_by_followers.png", "bench.md"):
        assert (Path(report["_out"]) / plot).stat().st_size > 0


def test_the_write_path_figures_are_reported_against_the_same_runs_driver(report: dict) -> None:  # type: ignore[type-arg]
    wp = report["write_path"]
    assert wp["big_fanout"]["followers"] == 2_000 and wp["big_fanout"]["inbox_rows_per_second"] > 0
    for order in ("live", "by_author"):
        follows = wp[f"follows_{order}"]
        assert follows["follows"] == 3_000 and follows["follows_per_s"] > 0, follows
        assert set(follows["cpu_s_per_1000_follows"]) == {"worker", "cassandra", "kafka"}
    assert wp["import"]["edges"] == 20_000 and wp["import"]["counts_checked"] > 0
    assert set(wp["import"]["cpu_s_per_1000_edges"]) == {"importer", "cassandra", "kafka"}
    for s in report["strategies"].values():  # every strategy's graph went through the import
        assert s["graph_import"]["follows"] == report["workload"]["follows"]
    best = report["driver"]["best_insert"]["rows_per_s"]
    assert report["efficiency"]["fanout_push"] == round(report["strategies"]["push"]["fanout_rows_per_s"] / best, 3)
    text = (Path(report["_out"]) / "bench.md").read_text()
    assert "Write path, same run" in text and "one big fan-out" in text
    # the floor loops (posts with their own rows) are reported beside the best insert, as ratios of it
    floors = {e["rows_per_post"]: e["rows_per_s"] for e in report["driver"]["post_rows"]}
    assert set(floors) == {5, 20} and all(v > 0 for v in floors.values())
    assert f"ratio {round(floors[5] / best, 3)}: the ceiling at ~5 rows per post" in text
    assert (Path(report["_out"]) / "write_path.png").stat().st_size > 0


def test_inbox_rows_add_up_for_each_strategy(report: dict) -> None:  # type: ignore[type-arg]
    expected = report["workload"]["expected_rows"]
    rows = {name: s["inbox_rows"] for name, s in report["strategies"].items()}
    assert rows["push"] == expected["push"] == report["workload"]["deliveries"]  # every follower of every post
    assert rows["pull"] == 0  # nothing pushed
    assert rows["hybrid"] == expected["hybrid"]  # active followers of authors below the threshold
    assert rows["hybrid"] < rows["push"]
