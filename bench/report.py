"""The report of `fanout bench`: JSON with every figure, a Markdown summary, and PNG plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

BUCKETS = ("1-9", "10-99", "100-999", "1k-9k", "10k+")


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
    lines = [
        f"`{report['command']}`", "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; Python {m['python']}, Kafka {m['kafka']}, "
        f"Cassandra {m['cassandra']}. Workload: {wl['users']:,} users (power law, exponent {wl['exponent']}), "
        f"{wl['inactive_share']:.0%} inactive, {wl['posts']:,} posts at {wl['rate_posts_per_s']:.0f}/s "
        f"({wl['deliveries']:,} deliveries if every follower got every post), {wl['reads']:,} feed reads, "
        f"celebrity threshold {wl['threshold']:,}.", "",
        "| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names),
    ]

    def row(label: str, value: Any) -> None:
        lines.append(f"| {label} | " + " | ".join(str(value(s[n])) for n in names) + " |")

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
    lines += ["", "Bare cassandra-driver limits on the same Cassandra, same run:", "",
              "| request shape | protocol | window | rows/s | client CPU ms per 1,000 rows |", "|---|---|---|---|---|"]
    for r in d.get("inserts", []):
        lines.append(f"| {r.get('shape')} | v{r.get('protocol')} | {r.get('window', '-')} | "
                     f"{r.get('rows_per_s', r.get('error', '-'))} | {r.get('cpu_ms_per_1000_rows', '-')} |")
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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = report["strategies"]
    names = list(s)
    paths = []

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.bar(names, [s[n]["rows_per_post"] for n in names], color=["#4c72b0", "#dd8452", "#55a868"][: len(names)])
    ax.set_ylabel("inbox rows written per post")
    ax.set_title("Write amplification by strategy")
    paths.append(_save(fig, out / "write_amplification.png"))

    fig, ax = plt.subplots(figsize=(6, 4))
    for n in names:
        values = sorted(s[n]["reads"]["latencies_ms"])
        ax.plot(values, [i / max(len(values) - 1, 1) for i in range(len(values))], label=n)
    ax.set_xscale("log")
    ax.set_xlabel("feed read latency (ms, log scale)")
    ax.set_ylabel("share of reads at or below")
    ax.set_title(f"Read latency at {s[names[0]]['reads']['concurrency']} concurrent clients")
    ax.legend()
    paths.append(_save(fig, out / "read_latency.png"))

    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(names)
    for i, n in enumerate(names):
        values = [s[n]["lag_by_followers"].get(b, {}).get("p99_ms", 0) for b in BUCKETS]
        ax.bar([x + i * width for x in range(len(BUCKETS))], values, width=width, label=n)
    ax.set_xticks([x + width * (len(names) - 1) / 2 for x in range(len(BUCKETS))], BUCKETS)
    ax.set_xlabel("author's followers")
    ax.set_ylabel("p99 end-to-end fan-out lag (ms)")
    ax.set_title("Fan-out lag by audience size (pull writes no inbox: no bars)")
    ax.legend()
    paths.append(_save(fig, out / "lag_by_followers.png"))
    return paths


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def write_report(report: dict[str, Any], out: Path) -> str:
    out.mkdir(parents=True, exist_ok=True)
    report["efficiency"] = efficiency(report)
    (out / "bench.json").write_text(json.dumps(report, indent=2))
    text = markdown(report)
    (out / "bench.md").write_text(text + "\n")
    plot(report, out)
    return text
