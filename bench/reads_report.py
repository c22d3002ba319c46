"""The report of `fanout bench reads`: Markdown tables and PNG plots (p99 against offered rate, and
latency by reader group)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.charts import figure, grouped_bars, save, table


def _label(run: dict[str, Any]) -> str:
    n = run["read_workers"]
    return f"{run['strategy']} ({n} process{'es' if n > 1 else ''})"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def markdown(report: dict[str, Any]) -> str:
    bare = report["bare_driver"]
    best_bare = max((e.get("reads_per_s", 0) for e in bare.values()), default=0)
    lines = [f"`{report['command']}`", "",
             f"{report['users']:,} users, {report['edges']:,} follow edges, {report['posts']:,} posts, "
             f"{report['readers_per_group']} readers per group, {report['celebrities']} celebrities. "
             f"Machine: {report['machine'].get('cpu', '?')}, {report['machine'].get('cores', '?')} cores.", "",
             "Bare cassandra-driver inbox-page loop (same Cassandra, same run): " +
             ", ".join(f"{k.replace('_', ' ')}: {e.get('reads_per_s', e.get('error'))} reads/s, "
                       f"p99 {e.get('p99_ms')} ms" for k, e in bare.items()), ""]
    lines += table(["run", "peak reads/s (wrk)", "vs bare driver", "p50 ms", "p99 ms", "Cassandra requests/read",
                    "first pages from memory", "CPU ms/1000 reads: read API", "Cassandra"],
                   [[_label(r), f"{r['peak']['reads_per_s']:,}",
                     f"{r['peak']['reads_per_s'] / best_bare:.2f}" if best_bare else "-",
                     _ms(r["peak"]["p50_ms"]), _ms(r["peak"]["p99_ms"]), r["cassandra_requests_per_read"],
                     _share(r.get("reader_page_hit_ratio")),
                     r["cpu_ms_per_1000_reads"]["read-api"], r["cpu_ms_per_1000_reads"]["cassandra"]]
                    for r in report["runs"]])
    lines += ["", "Fixed offered rate (vegeta, open loop, mixed readers):", ""]
    lines += table(["run", "offered/s", "achieved/s", "success", "p50 ms", "p90 ms", "p99 ms"],
                   [[_label(r), f"{f['offered_per_s']:.0f}", f"{f['achieved_per_s']:.0f}", f"{f['success']:.3f}",
                     _ms(f["p50_ms"]), _ms(f["p90_ms"]), _ms(f["p99_ms"])]
                    for r in report["runs"] for f in r["fixed_rate"]])
    groups = list(report["runs"][0]["by_group"]) if report["runs"] else []
    lines += ["", "By reader group, below saturation (vegeta):", ""]
    lines += table(["group", *(f"{_label(r)} p50 / p99 ms" for r in report["runs"])],
                   [[g, *(f"{_ms(r['by_group'][g]['p50_ms'])} / {_ms(r['by_group'][g]['p99_ms'])}"
                          for r in report["runs"])] for g in groups])
    lines += ["", "First read of a returning reader (a pull over every followee while the inbox is rebuilt): " +
              "; ".join(f"{_label(r)} p50 {_ms(r['returning_first_read']['p50_ms'])} ms, "
                        f"p99 {_ms(r['returning_first_read']['p99_ms'])} ms" for r in report["runs"]), ""]
    return "\n".join(lines)


def plot(report: dict[str, Any], out: Path) -> list[Path]:
    fig, ax = figure()
    for run in report["runs"]:
        points = [(f["offered_per_s"], f["p99_ms"]) for f in run["fixed_rate"]]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=_label(run))
    ax.set_xlabel("offered reads/s (vegeta)")
    ax.set_ylabel("p99 latency, ms")
    ax.set_yscale("log")
    ax.set_title("Feed read p99 against offered rate")
    ax.legend()
    paths = [save(fig, out / "read_p99_by_rate.png")]
    fig, ax = figure(8, 4)
    groups = list(report["runs"][0]["by_group"]) if report["runs"] else []
    grouped_bars(ax, groups, {_label(r): [r["by_group"][g]["p99_ms"] for g in groups] for r in report["runs"]})
    ax.set_ylabel("p99 latency, ms")
    ax.set_yscale("log")
    ax.set_title("Feed read p99 by what the reader follows")
    paths.append(save(fig, out / "read_p99_by_group.png"))
    return paths
