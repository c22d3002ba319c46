"""The reports of `fanout bench` and `fanout bench pipeline`: JSON with every figure, Markdown tables and
PNG plots (bench/charts.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import writepath_report
from bench.charts import figure, grouped_bars, save, table

BUCKETS = ("1-9", "10-99", "100-999", "1k-9k", "10k+")


# --- `fanout bench`: push-only, pull-only and hybrid against the bare driver ------------------------------


def efficiency(report: dict[str, Any]) -> dict[str, float | None]:
    """Our fan-out rate over the best bare insert rate, and our read rate over the bare read rate."""
    best = (report["driver"].get("best_insert") or {}).get("rows_per_s")
    bare_reads = (report["driver"].get("reads") or {}).get("reads_per_s")
    hybrid = report["strategies"]["hybrid"]
    push = report["strategies"]["push"]
    return {
        "fanout_push": round(push["fanout_rows_per_s"] / best, 3) if best else None,
        "fanout_hybrid": round(hybrid["fanout_rows_per_s"] / best, 3) if best else None,
        "reads_hybrid": round(hybrid["reads"]["reads_per_s"] / bare_reads, 3) if bare_reads else None,
    }


def markdown(report: dict[str, Any]) -> str:
    s = report["strategies"]
    m, wl = report["machine"], report["workload"]
    names = list(s)
    rows: list[list[Any]] = []

    def row(label: str, value: Any) -> None:
        rows.append([label, *(value(s[n]) for n in names)])

    row("inbox rows written per post (write amplification)", lambda r: r["rows_per_post"])
    row("inbox rows stored / logical bytes", lambda r: f"{r['inbox_rows']:,} / {r['inbox_bytes_logical']:,}")
    row("fan-out throughput: inbox rows/s for a burst of half the posts", lambda r: f"{r['fanout_rows_per_s']:,}")
    for b in BUCKETS:
        row(f"fan-out lag p50 / p99 / max at the nominal rate, authors with {b} followers",
            lambda r, b=b: " / ".join(f"{v:.0f}" for v in r["lag_by_followers"][b].values()) + " ms"
            if b in r["lag_by_followers"] else "-")
    row("a post of the most-followed author visible to 10 followers", lambda r: f"{r['celebrity_post_visible_ms']} ms")
    row(f"feed reads/s at {s[names[0]]['reads']['concurrency']} clients", lambda r: r["reads"]["reads_per_s"])
    groups = [g for g in s[names[0]]["reads"] if isinstance(s[names[0]]["reads"][g], dict)]
    for g in groups:
        row(f"read p50 / p99 / max, {g}", lambda r, g=g: _latency(r["reads"].get(g)))
    for proc in ("worker", "read-api", "cassandra", "kafka"):
        row(f"CPU s per 1,000 deliveries, {proc}", lambda r, p=proc: r["cpu_s_per_1000_deliveries"].get(p, "-"))
    d = report["driver"]
    eff = efficiency(report)
    lines = [
        f"`{report['command']}`", "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; Python {m['python']}, Kafka {m['kafka']}, "
        f"Cassandra {m['cassandra']}. Workload: {wl['users']:,} users (power law, exponent {wl['exponent']}), "
        f"{wl['inactive_share']:.0%} inactive, {wl['posts']:,} posts at {wl['rate_posts_per_s']:.0f}/s "
        f"({wl['deliveries']:,} deliveries if every follower got every post), {wl['reads']:,} feed reads, "
        f"celebrity threshold {wl['threshold']:,}.", "",
        *table(["", *names], rows),
        "", "Bare cassandra-driver limits on the same Cassandra, same run:", "",
        *table(["request shape", "protocol", "window", "rows/s", "client CPU ms per 1,000 rows"],
               ([r.get("shape"), f"v{r.get('protocol')}", r.get("window", "-"),
                 r.get("rows_per_s", r.get("error", "-")), r.get("cpu_ms_per_1000_rows", "-")]
                for r in [*d.get("inserts", []), *d.get("post_rows", [])])),
    ]
    if "reads" in d:
        lines.append(f"\nBare inbox-page read loop: {d['reads'].get('reads_per_s')} reads/s "
                     f"(p50 {d['reads'].get('p50_ms')} ms, p99 {d['reads'].get('p99_ms')} ms).")
    lines.append(f"\nFan-out efficiency (our burst rows/s / best bare insert rows/s): push-only "
                 f"{eff['fanout_push']}, hybrid {eff['fanout_hybrid']}. Read rate / bare read rate (hybrid): "
                 f"{eff['reads_hybrid']}.")
    return "\n".join(lines)


def _latency(group: dict[str, Any] | None) -> str:
    if not group:
        return "-"
    return f"{group['p50_ms']:.1f} / {group['p99_ms']:.1f} / {group['max_ms']:.0f} ms"


def plot(report: dict[str, Any], out: Path) -> list[Path]:
    s = report["strategies"]
    names = list(s)
    paths = []

    fig, ax = figure()
    ax.bar(names, [s[n]["rows_per_post"] for n in names], color=["#4c72b0", "#dd8452", "#55a868"][: len(names)])
    ax.set_ylabel("inbox rows written per post")
    ax.set_title("Write amplification by strategy")
    paths.append(save(fig, out / "write_amplification.png"))

    fig, ax = figure()
    for n in names:
        values = sorted(s[n]["reads"]["latencies_ms"])
        ax.plot(values, [i / max(len(values) - 1, 1) for i in range(len(values))], label=n)
    ax.set_xscale("log")
    ax.set_xlabel("feed read latency (ms, log scale)")
    ax.set_ylabel("share of reads at or below")
    ax.set_title(f"Read latency at {s[names[0]]['reads']['concurrency']} concurrent clients")
    ax.legend()
    paths.append(save(fig, out / "read_latency.png"))

    fig, ax = figure(7)
    grouped_bars(ax, BUCKETS, {n: [s[n]["lag_by_followers"].get(b, {}).get("p99_ms", 0) for b in BUCKETS]
                               for n in names})
    ax.set_xlabel("author's followers")
    ax.set_ylabel("p99 end-to-end fan-out lag (ms)")
    ax.set_title("Fan-out lag by audience size (pull writes no inbox: no bars)")
    paths.append(save(fig, out / "lag_by_followers.png"))
    return paths


def write_report(report: dict[str, Any], out: Path) -> str:
    out.mkdir(parents=True, exist_ok=True)
    report["efficiency"] = efficiency(report)
    (out / "bench.json").write_text(json.dumps(report, indent=2))
    text = markdown(report)
    if "write_path" in report:
        text += "\n\n" + writepath_report.markdown(report)
        writepath_report.plot(report, out)
    (out / "bench.md").write_text(text + "\n")
    plot(report, out)
    return text


# --- `fanout bench pipeline`: fan-out rate, lag and read latency of the hybrid --------------------------


@dataclass
class PipelineReport:
    command: str
    machine: dict[str, Any]
    results: dict[str, Any] = field(default_factory=dict)


def pipeline_markdown(report: PipelineReport) -> str:
    r = report.results
    rows: list[tuple[str, Any]] = []
    if big := r.get("big_fanout"):
        rows += [(f"inbox rows/s, one {big['followers']:,}-follower post", f"{big['inbox_rows_per_second']:,}"),
                 ("seconds from acceptance to last inbox write", big["seconds_from_ack_to_last_write"])]
    if mix := r.get("steady_mix"):
        rows += [(f"inbox rows/s, steady mix ({mix['rate_posts_per_second']:.0f} posts/s, {mix['users']:,} users)",
                  f"{mix['inbox_rows_per_second']:,}"),
                 ("end-to-end fan-out lag p50 / p99 (steady mix)", f"{mix['lag_p50_ms']} ms / {mix['lag_p99_ms']} ms")]
    for name, v in r.get("reads", {}).items():
        rows.append((f"read p50 / p99 at {v['concurrency']} clients, {name.replace('_', ' ')}",
                     f"{v['p50_ms']} ms / {v['p99_ms']} ms"))
    if regen := r.get("regeneration"):
        rows += [(f"returning user following {regen['followees']}: first read (pull)", f"{regen['first_read_ms']} ms"),
                 ("returning user: first read until inbox rebuilt", f"{regen['seconds_until_inbox_rebuilt']} s")]
    head = f"`{report.command}` on {report.machine['cpu']} ({report.machine['cores']} cores)"
    return "\n".join([head, "", *table(["figure", "value"], rows)])


def pipeline_plot(report: PipelineReport, path: Path) -> Path:
    """Read latency p50 and p99 by how many celebrities the reader follows."""
    reads = report.results["reads"]
    fig, ax = figure()
    grouped_bars(ax, [f"{n.split('_')[1]} celebrities" for n in reads],
                 {q: [v[f"{q}_ms"] for v in reads.values()] for q in ("p50", "p99")})
    ax.set_ylabel("feed read latency (ms)")
    ax.set_title(f"Read latency at {next(iter(reads.values()))['concurrency']} concurrent clients")
    return save(fig, path)
