"""The write path's figures of a `fanout bench` report (issue 10): against the best bare batched insert of
the same run, with the CPU each process spent per 1,000 deliveries; and the before/after of two reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.charts import figure, grouped_bars, pyplot, save, table
from bench.driver import ROWS_PER_POST

# (key, label, target): ratios are our rows/s over the best bare batched insert rows/s of the same run.
RATIOS = (("hybrid_ratio", "hybrid burst", 0.5), ("push_ratio", "push-only burst", 0.6),
          ("big_fanout_ratio", "one 10k-follower post", 0.6))
PROCESSES = ("worker", "importer", "cassandra", "kafka")
# The floor loop each burst is measured against: the hybrid pushes ~6 rows per post, push-only ~21.
FEW, MANY = ROWS_PER_POST


def figures(report: dict[str, Any]) -> dict[str, Any]:
    """Every write-path figure of one report, None where the report lacks it (older reports)."""
    best = (report.get("driver", {}).get("best_insert") or {}).get("rows_per_s")
    s = report.get("strategies", {})
    wp = report.get("write_path", {})
    big = wp.get("big_fanout") or {}

    def ratio(value: float | None) -> float | None:
        return round(value / best, 3) if value and best else None

    f: dict[str, Any] = {
        "best_bare_rows_per_s": best,
        "hybrid_rows_per_s": s.get("hybrid", {}).get("fanout_rows_per_s"),
        "push_rows_per_s": s.get("push", {}).get("fanout_rows_per_s"),
        "big_fanout_rows_per_s": big.get("inbox_rows_per_second"),
        "follows_live_per_s": (wp.get("follows_live") or {}).get("follows_per_s"),
        "follows_by_author_per_s": (wp.get("follows_by_author") or {}).get("follows_per_s"),
        "import_edges_per_s": (wp.get("import") or {}).get("edges_per_s"),
        "import_edges": (wp.get("import") or {}).get("edges"),
        "import_seconds": (wp.get("import") or {}).get("seconds"),
        "hybrid_lag_p99_ms": max((b.get("p99_ms", 0) for name, b in
                                  s.get("hybrid", {}).get("lag_by_followers", {}).items() if name != "10k+"),
                                 default=None),
    }
    # The bare loops that also write each post's own rows (bench/driver.py post_rows): the most a fan-out of
    # that many rows per post can reach, however fast the pipeline around the writes gets.
    floors = {e.get("rows_per_post"): e.get("rows_per_s") for e in report.get("driver", {}).get("post_rows", [])
              if "error" not in e}
    for n in ROWS_PER_POST:
        f[f"floor_{n}_rows_per_s"] = floors.get(n)
        f[f"floor_{n}_ratio"] = ratio(floors.get(n))
    f["hybrid_ratio"] = ratio(f["hybrid_rows_per_s"])
    f["push_ratio"] = ratio(f["push_rows_per_s"])
    f["big_fanout_ratio"] = ratio(f["big_fanout_rows_per_s"])
    f["cpu"] = {
        "hybrid burst run (per 1,000 deliveries)": s.get("hybrid", {}).get("cpu_s_per_1000_deliveries"),
        "push-only run (per 1,000 deliveries)": s.get("push", {}).get("cpu_s_per_1000_deliveries"),
        "one big fan-out (per 1,000 inbox rows)": big.get("cpu_s_per_1000_deliveries"),
        "follows, live (per 1,000 follows)": (wp.get("follows_live") or {}).get("cpu_s_per_1000_follows"),
        "graph import (per 1,000 edges)": (wp.get("import") or {}).get("cpu_s_per_1000_edges"),
    }
    return f


def _n(value: Any, fmt: str = ",") -> str:
    return "-" if value is None else format(value, fmt)


def markdown(report: dict[str, Any]) -> str:
    f = figures(report)
    rows = [
        ["best bare batched insert (rows/s)", _n(f["best_bare_rows_per_s"]), ""],
        ["hybrid burst (inbox rows/s)", _n(f["hybrid_rows_per_s"]), f"ratio {_n(f['hybrid_ratio'])} (target 0.5)"],
        ["push-only burst (inbox rows/s)", _n(f["push_rows_per_s"]), f"ratio {_n(f['push_ratio'])} (target 0.6)"],
        *([f"bare loop of posts with {n} inbox rows each, with their post and timeline rows (inbox rows/s)",
           _n(f[f"floor_{n}_rows_per_s"]), f"ratio {_n(f[f'floor_{n}_ratio'])}: the ceiling at ~{n} rows per post"]
          for n in ROWS_PER_POST),
        ["one big fan-out (inbox rows/s)", _n(f["big_fanout_rows_per_s"]),
         f"ratio {_n(f['big_fanout_ratio'])} (target 0.6)"],
        ["follows/s, one worker, live stream", _n(f["follows_live_per_s"]), "target 3,000"],
        ["follows/s, one worker, graph through Kafka", _n(f["follows_by_author_per_s"]), "target 3,000"],
        [f"graph import of {_n(f['import_edges'])} edges (edges/s)", _n(f["import_edges_per_s"]),
         f"{_n(f['import_seconds'])} s (target 1M in < 120 s)"],
        ["hybrid fan-out lag p99 at the nominal rate, worst bucket below 10k (ms)", _n(f["hybrid_lag_p99_ms"]), ""],
    ]
    cpu_rows = [[what, *(_n((per or {}).get(p)) for p in PROCESSES)] for what, per in f["cpu"].items()]
    return "\n".join(["Write path, same run:", "", *table(["figure", "value", ""], rows), "",
                      "CPU seconds per 1,000 deliveries, by process:", "",
                      *table(["", *PROCESSES], cpu_rows)])


def plot(report: dict[str, Any], out: Path) -> Path:
    f = figures(report)
    fig, ax = figure(7)
    labels = [label for _, label, _ in RATIOS]
    # What a bare loop writing the same rows per post reaches (one big post's own rows are negligible: 1.0).
    ceilings = [f[f"floor_{FEW}_ratio"] or 0, f[f"floor_{MANY}_ratio"] or 0, 1.0]
    grouped_bars(ax, labels, {"measured": [f[key] or 0 for key, _, _ in RATIOS],
                              "bare loop writing posts with their rows": ceilings,
                              "target": [target for _, _, target in RATIOS]})
    ax.set_ylabel("rows/s over the best bare batched insert")
    ax.set_title("Fan-out efficiency against the bare driver, same run")
    return save(fig, out / "write_path.png")


def compare(before: dict[str, Any], after: dict[str, Any], out: Path) -> str:
    """A before/after table of the write-path figures, and the plot of the ratios and rates."""
    b, a = figures(before), figures(after)
    keys = ["best_bare_rows_per_s", *(f"floor_{n}_{what}" for n in ROWS_PER_POST for what in ("rows_per_s", "ratio")),
            "hybrid_rows_per_s", "hybrid_ratio", "push_rows_per_s", "push_ratio",
            "big_fanout_rows_per_s", "big_fanout_ratio", "follows_live_per_s", "follows_by_author_per_s",
            "import_edges_per_s", "hybrid_lag_p99_ms"]
    text = "\n".join(table(["figure", "before", "after"], ([k, _n(b[k]), _n(a[k])] for k in keys)))
    fig = pyplot().figure(figsize=(11, 4))
    left, right = fig.subplots(1, 2)
    grouped_bars(left, [label for _, label, _ in RATIOS], {
        "before": [b[k] or 0 for k, _, _ in RATIOS], "after": [a[k] or 0 for k, _, _ in RATIOS],
        "target": [t for _, _, t in RATIOS]})
    left.set_ylabel("rows/s over the best bare batched insert")
    left.set_title("Fan-out efficiency, same-run ratio")
    rates = ("follows_live_per_s", "follows_by_author_per_s")
    grouped_bars(right, ["follows/s, live", "follows/s, by author"],
                 {"before": [b[k] or 0 for k in rates], "after": [a[k] or 0 for k in rates],
                  "target": [3000, 3000]})
    right.set_title("Follows per second, one worker")
    save(fig, out / "compare.png")
    (out / "compare.md").write_text(text + "\n")
    return text
