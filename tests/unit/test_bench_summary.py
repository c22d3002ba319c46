"""bench/targets.py and bench/summary.py: BENCHMARKS.md's targets are computed from a run's reports, and a
target without its figure is "not measured", never met."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bench import summary
from bench.targets import TARGETS, evaluate


def stream_report(received: int = 100, duplicates: int = 0, p99: float = 120.0) -> dict[str, Any]:
    return {"command": "fanout bench stream", "readers": 500, "posts": 900, "rate": 30.0,
            "expected_deliveries": 100, "received": received, "duplicates": duplicates, "p50_ms": 80.0,
            "p99_ms": p99, "max_ms": 150.0, "read_api_cpu_ms_per_1000_items": 190.0}


def verdicts(reports: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {o.target.name: o.verdict for o in evaluate(reports)}


def test_stream_targets_are_met_or_not_by_the_figures() -> None:
    good = verdicts({"stream": stream_report()})
    assert good["live feed p99, acceptance to arrival, 500 connected readers"] == "met"
    assert good["live feed items missed or duplicated"] == "met"
    bad = verdicts({"stream": stream_report(received=99, duplicates=1, p99=250.0)})
    assert bad["live feed p99, acceptance to arrival, 500 connected readers"] == "not met"
    assert bad["live feed items missed or duplicated"] == "not met"


def test_a_target_whose_report_is_missing_is_not_measured() -> None:
    assert set(verdicts({}).values()) == {"not measured"}
    assert len(verdicts({})) == len(TARGETS)


def test_read_targets_come_from_the_hybrid_run_of_one_process() -> None:
    run = {"strategy": "hybrid", "read_workers": 1, "peak": {"reads_per_s": 2000},
           "fixed_rate": [{"offered_per_s": 500.0, "p99_ms": 25.0}, {"offered_per_s": 1000.0, "p99_ms": 30.0}],
           "by_group": {"200 normal authors": {"p99_ms": 2.0}}}
    pull = {"strategy": "pull", "read_workers": 1, "by_group": {"200 normal authors": {"p99_ms": 20.0}}}
    two = {**run, "read_workers": 2, "peak": {"reads_per_s": 1}}
    v = verdicts({"reads": {"runs": [two, run, pull], "bare_driver": {"window 16": {"reads_per_s": 4000}}}})
    assert v["peak feed reads/s, hybrid, one read process (wrk, 16 connections)"] == "met"
    assert v["peak feed reads/s over the bare driver's inbox-page loop"] == "met"  # 0.5
    assert v["feed read p99 at 500 reads/s offered, hybrid, one process"] == "not met"  # 25 > 20
    assert v["feed read p99 at 1,000 reads/s offered, hybrid, one process"] == "met"
    assert v["pull-only read p99 over the hybrid's, readers of 200 normal authors"] == "met"  # 10x


def test_the_summary_names_the_run_and_counts_the_targets(tmp_path: Path) -> None:
    out = tmp_path / "docs" / "benchmarks"
    (out / "stream").mkdir(parents=True)
    (out / "stream" / "stream.json").write_text(json.dumps(stream_report()))
    (out / "stream" / "stream_latency.png").write_bytes(b"png")
    (out / "all.json").write_text(json.dumps({
        "command": "fanout bench all", "commit": "abc1234", "dirty": False, "started": "2026-12-06T07:00:00+00:00",
        "machine": {"cpu": "AMD EPYC", "cores": 2, "memory_gib": 23.5, "python": "3.11.7"}, "seconds": 600,
        "parts": {"stream": {"command": "fanout bench stream --out docs/benchmarks/stream", "seconds": 60}}}))
    text = summary.markdown(out, tmp_path)
    assert "one run of `fanout bench all` on commit `abc1234`, 2026-12-06" in text
    assert f"2 of {len(TARGETS)} targets met" in text
    assert "Command: `fanout bench stream --out docs/benchmarks/stream` (1.0 min)." in text
    assert "| 500 | 900 at 30/s | 100 / 100 / 0 | 80.0 ms | 120.0 ms | 150.0 ms | 190.0 ms |" in text
    assert "![stream latency](docs/benchmarks/stream/stream_latency.png)" in text
    assert "## Feed reads" not in text  # a part that did not run has no section


def test_bench_all_runs_every_part_in_order_and_writes_the_manifest_and_summary(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    from bench import all as all_parts

    ran: list[list[str]] = []
    real_run = subprocess.run

    def fake_run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        if argv[1:3] != ["-m", "services.cli"]:  # git, uname: the real thing
            return real_run(argv, **kwargs)
        ran.append(argv[4:])  # after "python -m services.cli bench"
        part_dir = Path(argv[argv.index("--out") + 1])
        part_dir.mkdir(parents=True, exist_ok=True)
        if part_dir.name == "stream":
            (part_dir / "stream.json").write_text(json.dumps(stream_report()))
        return subprocess.CompletedProcess(argv, 0)

    monkeypatch.setattr(all_parts.subprocess, "run", fake_run)
    out, md = tmp_path / "benchmarks", tmp_path / "BENCHMARKS.md"
    manifest = all_parts.run(out, md, quick=True, command="fanout bench all --quick", console=Console(quiet=True))
    assert [args[0] if args[0] != "--quick" else "write" for args in ran] == list(all_parts.PARTS)
    assert [args[args.index("--out") + 1] for args in ran] == [str(out / part) for part in all_parts.PARTS]
    assert json.loads((out / "all.json").read_text())["parts"].keys() == all_parts.PARTS.keys()
    assert manifest["parts"].keys() == all_parts.PARTS.keys()
    assert "## Live feeds" in md.read_text() and "## Feed reads" not in md.read_text()


def test_bench_all_stops_at_a_part_that_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    from bench import all as all_parts

    real_run = subprocess.run
    monkeypatch.setattr(all_parts.subprocess, "run", lambda argv, **kw: real_run(argv, **kw)
                        if argv[1:3] != ["-m", "services.cli"] else subprocess.CompletedProcess(argv, 3))
    with pytest.raises(RuntimeError, match="exit 3"):
        all_parts.run(tmp_path / "b", tmp_path / "B.md", quick=True, command="x", console=Console(quiet=True))
    assert not (tmp_path / "B.md").exists()
