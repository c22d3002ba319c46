"""The product's performance targets, each checked against the reports of one `fanout bench all` run.

A target names the report it reads (write, reads, stream, abuse, notifications), how its figure is computed from it, and
the bound. `evaluate` gives each target's figure and whether it is met; a target whose report is missing
or lacks the figure is "not measured", never met.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench import writepath_report

Reports = dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Target:
    name: str
    report: str  # which report of the run the figure comes from
    figure: Callable[[dict[str, Any]], float | None]
    at_least: float | None = None
    at_most: float | None = None
    unit: str = ""

    def bound(self) -> str:
        return f"≥ {self.at_least:,g}{self.unit}" if self.at_least is not None else f"≤ {self.at_most:,g}{self.unit}"

    def met(self, value: float) -> bool:
        if self.at_least is not None:
            return value >= self.at_least
        assert self.at_most is not None
        return value <= self.at_most


def _strategy(r: dict[str, Any], name: str) -> dict[str, Any]:
    return r.get("strategies", {}).get(name, {})


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def _read_run(r: dict[str, Any], strategy: str, workers: int = 1) -> dict[str, Any]:
    return next((run for run in r.get("runs", []) if run["strategy"] == strategy and run["read_workers"] == workers),
                {})


def _fixed_p99(r: dict[str, Any], rate: float) -> float | None:
    return next((f["p99_ms"] for f in _read_run(r, "hybrid").get("fixed_rate", []) if f["offered_per_s"] == rate),
                None)


def _group_p99(r: dict[str, Any], strategy: str, group: str) -> float | None:
    return _read_run(r, strategy).get("by_group", {}).get(group, {}).get("p99_ms")


def _bare_reads(r: dict[str, Any]) -> float | None:
    return max((e.get("reads_per_s", 0) for e in r.get("bare_driver", {}).values()), default=None) or None


def _write(key: str) -> Callable[[dict[str, Any]], float | None]:
    return lambda r: writepath_report.figures(r).get(key) if r else None


def _lost(r: dict[str, Any]) -> float | None:
    """Live feed items not received, plus duplicates."""
    if "received" not in r:
        return None
    return float(r["expected_deliveries"] - r["received"] + r["duplicates"])


TARGETS = (
    Target("hybrid inbox rows per post, as a share of push-only's", "write",
           lambda r: _ratio(_strategy(r, "hybrid").get("rows_per_post"), _strategy(r, "push").get("rows_per_post")),
           at_most=0.5),
    Target("hybrid read p99 over push-only's, 16 clients", "write",
           lambda r: _ratio(_strategy(r, "hybrid").get("reads", {}).get("all", {}).get("p99_ms"),
                            _strategy(r, "push").get("reads", {}).get("all", {}).get("p99_ms")), at_most=2),
    Target("hybrid fan-out lag p99 at the nominal rate, authors below 10k followers", "write",
           _write("hybrid_lag_p99_ms"), at_most=1000, unit=" ms"),
    Target("a post of the most-followed author visible to 10 followers", "write",
           lambda r: _strategy(r, "hybrid").get("celebrity_post_visible_ms"), at_most=100, unit=" ms"),
    Target("hybrid burst, inbox rows/s over the best bare batched insert", "write", _write("hybrid_ratio"),
           at_least=0.5),
    Target("push-only burst, inbox rows/s over the best bare batched insert", "write", _write("push_ratio"),
           at_least=0.6),
    Target("one 10,000-follower post, inbox rows/s over the best bare batched insert", "write",
           _write("big_fanout_ratio"), at_least=0.6),
    Target("follows/s through Kafka and one worker, authors interleaved", "write", _write("follows_live_per_s"),
           at_least=3000),
    Target("graph import: 1,000,000 edges at the measured rate", "write",
           lambda r: _ratio(1_000_000, _write("import_edges_per_s")(r)), at_most=120, unit=" s"),
    Target("peak feed reads/s, hybrid, one read process (wrk, 16 connections)", "reads",
           lambda r: _read_run(r, "hybrid").get("peak", {}).get("reads_per_s"), at_least=1000),
    Target("peak feed reads/s over the bare driver's inbox-page loop", "reads",
           lambda r: _ratio(_read_run(r, "hybrid").get("peak", {}).get("reads_per_s"), _bare_reads(r)),
           at_least=0.25),
    Target("feed read p99 at 500 reads/s offered, hybrid, one process", "reads", lambda r: _fixed_p99(r, 500),
           at_most=20, unit=" ms"),
    Target("feed read p99 at 1,000 reads/s offered, hybrid, one process", "reads", lambda r: _fixed_p99(r, 1000),
           at_most=50, unit=" ms"),
    Target("pull-only read p99 over the hybrid's, readers of 200 normal authors", "reads",
           lambda r: _ratio(_group_p99(r, "pull", "200 normal authors"), _group_p99(r, "hybrid", "200 normal authors")),
           at_least=5),
    Target("live feed p99, acceptance to arrival, 500 connected readers", "stream", lambda r: r.get("p99_ms"),
           at_most=200, unit=" ms"),
    Target("live feed items missed or duplicated", "stream", _lost, at_most=0),
    Target("notification delivery p99 (like acked to GET /v1/notifications), quiet", "notifications",
           lambda r: r.get("quiet", {}).get("probe_p99_ms"), at_most=100, unit=" ms"),
    Target("notification delivery p99 during a burst of posts and a 100,000-row fan-out", "notifications",
           lambda r: r.get("burst", {}).get("probe_p99_ms"), at_most=200, unit=" ms"),
    Target("notification p99 during that burst, over the quiet one", "notifications",
           lambda r: r.get("burst_over_quiet_p99"), at_most=2),
    Target("likes/s of one notifier, counts exact", "notifications",
           lambda r: r.get("flood", {}).get("likes_per_s") if r.get("flood", {}).get("counts_checked") else None,
           at_least=3000),
    Target("normal users' read p99 beside a paced abuser, over the run without it", "abuse",
           lambda r: r.get("ratios", {}).get("paced", {}).get("read_p99"), at_most=2),
    Target("normal users' fan-out lag p99 beside a paced abuser, over the run without it", "abuse",
           lambda r: r.get("ratios", {}).get("paced", {}).get("fanout_lag_p99"), at_most=2),
)


@dataclass(frozen=True)
class Outcome:
    target: Target
    value: float | None

    @property
    def verdict(self) -> str:
        if self.value is None:
            return "not measured"
        return "met" if self.target.met(self.value) else "not met"


def evaluate(reports: Reports, targets: tuple[Target, ...] = TARGETS) -> list[Outcome]:
    outcomes = []
    for t in targets:
        report = reports.get(t.report)
        value = t.figure(report) if report else None
        outcomes.append(Outcome(t, None if value is None else float(value)))
    return outcomes
