"""tests/faults/report.py: docs/faults.md from the fault suites' records, each suite and cluster size as its
latest run."""

from __future__ import annotations

from typing import Any

from faults.report import markdown, runs


def record(fault: str, at: str, commit: str | None = "abc1234",
           command: str = "make test-faults PYTEST_ARGS='-k test_kill'", missing: int = 0,
           nodes: int = 1) -> dict[str, Any]:
    return {"fault": fault, "times": 1, "expected": 1000, "missing": missing, "extra": 0, "drain_seconds": 2.5,
            "nodes": nodes, "command": command, "notes": {"lag_at_kill": 3}, "at": at, "commit": commit}


def test_each_suite_and_cluster_size_shows_its_latest_run_only() -> None:
    records = [record("old kill", "2026-12-01 10:00:00", commit="0ld0000", missing=5),
               record("kill", "2026-12-06 10:00:00"), record("pause", "2026-12-06 10:20:00"),
               record("kill", "2026-12-06 09:00:00", nodes=3),
               record("docker kill", "2026-12-06 10:30:00", command="FANOUT_DOCKER_NODES=1 make test-docker")]
    latest = runs(records)
    assert [r["fault"] for r in latest[("make test-faults", 1)]] == ["kill", "pause"]
    assert [r["fault"] for r in latest[("make test-faults", 3)]] == ["kill"]
    assert [r["fault"] for r in latest[("make test-docker", 1)]] == ["docker kill"]


def test_a_gap_of_an_hour_or_another_commit_starts_a_new_run() -> None:
    records = [record("a", "2026-12-06 08:00:00"), record("b", "2026-12-06 09:30:00"),
               record("c", "2026-12-06 09:40:00", commit="def5678")]
    assert [r["fault"] for r in runs(records)[("make test-faults", 1)]] == ["c"]


def test_each_fault_names_the_command_that_runs_it_alone_on_its_cluster_size() -> None:
    text = markdown([record("kill", "2026-12-06 10:00:00", nodes=3)])
    assert "## `make test-faults`, 3 nodes" in text
    assert "`make test-faults FAULT_NODES=3 PYTEST_ARGS='-k test_kill'` |" in text


def test_the_document_names_the_commit_and_totals_what_was_lost() -> None:
    text = markdown([record("kill", "2026-12-06 10:00:00"), record("pause", "2026-12-06 10:05:00", missing=2)])
    assert "commit `abc1234`" in text and "2 faults, 2,000 rows checked, **2 missing, 0 extra**" in text
    assert "| pause | 1 | 1,000 | 2 | 0 | 2.5 s | lag at kill 3 | `make test-faults FAULT_NODES=1" in text
