"""tests/faults/report.py: docs/faults.md from the fault suites' records, each pass as its latest run."""

from __future__ import annotations

from typing import Any

from faults.report import markdown, runs


def record(fault: str, at: str, commit: str | None = "abc1234", command: str = "FAULT_NODES=1 make test-faults",
           missing: int = 0) -> dict[str, Any]:
    return {"fault": fault, "times": 1, "expected": 1000, "missing": missing, "extra": 0, "drain_seconds": 2.5,
            "nodes": 1, "command": command, "notes": {"lag_at_kill": 3}, "at": at, "commit": commit}


def test_each_command_shows_its_latest_run_only() -> None:
    records = [record("old kill", "2026-12-01 10:00:00", commit="0ld0000", missing=5),
               record("kill", "2026-12-06 10:00:00"), record("pause", "2026-12-06 10:20:00"),
               record("kill", "2026-12-06 09:00:00", command="FAULT_NODES=3 make test-faults")]
    latest = runs(records)
    assert [r["fault"] for r in latest["FAULT_NODES=1 make test-faults"]] == ["kill", "pause"]
    assert [r["fault"] for r in latest["FAULT_NODES=3 make test-faults"]] == ["kill"]


def test_a_gap_of_an_hour_or_another_commit_starts_a_new_run() -> None:
    records = [record("a", "2026-12-06 08:00:00"), record("b", "2026-12-06 09:30:00"),
               record("c", "2026-12-06 09:40:00", commit="def5678")]
    assert [r["fault"] for r in runs(records)["FAULT_NODES=1 make test-faults"]] == ["c"]


def test_the_document_names_the_commit_and_totals_what_was_lost() -> None:
    text = markdown([record("kill", "2026-12-06 10:00:00"), record("pause", "2026-12-06 10:05:00", missing=2)])
    assert "commit `abc1234`" in text and "2 faults, 2,000 rows checked, **2 missing, 0 extra**" in text
    assert "| pause | 1 | 1,000 | 2 | 0 | 2.5 s | lag at kill 3 |" in text
