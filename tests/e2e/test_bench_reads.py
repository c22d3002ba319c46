"""`fanout bench reads --quick` on the real stack: outside load generators got answers for every request, the
report is complete, and the costs it measures are those of the design (the hybrid's warm reads come from
memory; pull-only reads ask Cassandra for more). Nothing about speed is asserted; the figures are for
people to read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from fanout.adapters.cassandra.session import connect
from fanout.settings import Settings

pytestmark = pytest.mark.e2e


def keyspaces_and_topics(stack: Settings) -> set[str]:
    cluster, session = connect(stack)
    try:
        names = {r.keyspace_name for r in session.execute("SELECT keyspace_name FROM system_schema.keyspaces")}
    finally:
        cluster.shutdown()
    return names | set(AdminClient(stack.kafka_config("admin")).list_topics(timeout=30).topics)


@pytest.fixture(scope="module")
def report(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench-reads")
    before = keyspaces_and_topics(stack)
    subprocess.run([sys.executable, "-m", "services.cli", "bench", "reads", "--quick", "--out", str(out)],
                   check=True, env={**os.environ, **stack.to_env()}, timeout=600)
    data: dict[str, Any] = json.loads((out / "reads.json").read_text())
    data["_out"] = str(out)
    data["_left_behind"] = sorted(keyspaces_and_topics(stack) - before)
    return data


def test_every_request_of_every_load_was_answered(report: dict[str, Any]) -> None:
    assert [(r["strategy"], r["read_workers"]) for r in report["runs"]] == [("hybrid", 1), ("pull", 1)]
    for run in report["runs"]:
        assert run["peak"]["reads_per_s"] > 0 and run["peak"]["errors"] == 0
        loads = [*run["fixed_rate"], *run["by_group"].values(), run["returning_first_read"]]
        assert len(run["by_group"]) == 5
        for load in loads:
            assert load["requests"] > 0 and load["success"] == 1
            assert load["p50_ms"] <= load["p99_ms"] <= load["max_ms"]
    assert report["bare_driver"]["window_16"]["reads_per_s"] > 0


def test_warm_hybrid_reads_come_from_memory_and_pull_reads_do_not(report: dict[str, Any]) -> None:
    hybrid, pull = report["runs"]
    assert hybrid["reader_page_hit_ratio"] > 0.9  # the peak reads readers the warm-up read
    assert hybrid["cassandra_requests_per_read"] < 0.5
    assert pull["cassandra_requests_per_read"] >= 1  # every pull read lists the reader's followees


def test_the_scenarios_keyspaces_and_topics_are_dropped_at_the_end(report: dict[str, Any]) -> None:
    assert report["_left_behind"] == []


def test_the_report_and_plots_are_written(report: dict[str, Any]) -> None:
    out = Path(report["_out"])
    assert "| hybrid (1 process) |" in (out / "reads.md").read_text()
    for plot in ("read_p99_by_rate.png", "read_p99_by_group.png"):
        assert (out / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
