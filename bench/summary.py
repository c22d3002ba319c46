"""BENCHMARKS.md, written from the reports of one `fanout bench all` run (bench/all.py): the targets and
whether each is met (bench/targets.py), then each benchmark's figures, the command and commit behind them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.charts import table
from bench.targets import Reports, evaluate

# Each part of a run: its folder under the run's output, its report file, and what it measures.
PARTS: dict[str, tuple[str, str]] = {
    "write": ("bench.json", "Push-only, pull-only and hybrid on the same power-law workload through the real pipeline, "
              "beside the bare cassandra-driver loops on the same Cassandra: write amplification, fan-out "
              "throughput and lag, feed reads at saturation, one big fan-out, follows per second through "
              "Kafka and one worker, the graph import, and the CPU each process spent."),
    "reads": ("reads.json", "Feed reads through the real read API, driven by outside load generators (Debian's wrk "
              "for the peak, vegeta at fixed offered rates), hybrid against pull-only, beside the bare "
              "driver's inbox-page loop."),
    "stream": ("stream.json", "Live feeds: readers connected to `GET /v1/feed/stream` while posts go through the "
               "real worker at the nominal rate; latency from a post's acceptance to its arrival on a stream."),
    "abuse": ("abuse.json", "Normal users' read latency and fan-out lag beside one abusing user (a follow storm, "
              "live streams opened and never read, reads at the rate limit), against rounds without it; "
              "paced: the abuser honours Retry-After; flood: it ignores 429s."),
    "notifications": ("notifications.json", "Notification feeds: likes at a steady rate while probes time a like of "
                      "a fresh post from Kafka's ack until its owner's `GET /v1/notifications` shows it, first quiet, "
                      "then while the worker takes a burst of posts and one post pushed to 100,000 inboxes; then "
                      "30,000 likes at once for one notifier's likes/s, rows written per like and every count "
                      "checked exact."),
    "handlers": ("handlers.json", "The worker's own CPU per event (handlers, plans and executor), on the in-memory "
                 "adapter with Kafka sends that return at once: the part of the worker's CPU that is the project's "
                 "code."),
    "retries": ("retries.json", "What one call costs through each way of retrying it, in-process (no servers)."),
}
TITLES = {"write": "Write path and strategies", "reads": "Feed reads", "stream": "Live feeds",
          "abuse": "One abusive user beside normal users", "notifications": "Notification feeds",
          "handlers": "The worker's own code", "retries": "Retry machinery"}


def load(out: Path) -> tuple[dict[str, Any], Reports]:
    """The run's manifest (all.json) and every part's report found in `out`."""
    manifest = json.loads((out / "all.json").read_text())
    reports = {}
    for part, (name, _) in PARTS.items():
        path = out / part / name
        if path.exists():
            reports[part] = json.loads(path.read_text())
    return manifest, reports


def _figure(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return f"{value:,.3g}{unit}" if abs(value) < 10 else f"{value:,.0f}{unit}"


def targets_table(reports: Reports) -> list[str]:
    outcomes = evaluate(reports)
    met = sum(o.verdict == "met" for o in outcomes)
    lines = table(["target", "bound", "figure", ""],
                  [[o.target.name, o.target.bound(), _figure(o.value, o.target.unit),
                    f"**{o.verdict}**" if o.verdict != "met" else "met"] for o in outcomes])
    return [*lines, "", f"{met} of {len(outcomes)} targets met. Each figure is computed from the reports below "
                        "(bench/targets.py says how)."]


def _stream(r: dict[str, Any]) -> list[str]:
    return table(["readers", "posts", "deliveries expected / received / duplicates", "p50", "p99", "max",
                  "read-service CPU per 1,000 items"],
                 [[r["readers"], f"{r['posts']:,} at {r['rate']:g}/s",
                   f"{r['expected_deliveries']:,} / {r['received']:,} / {r['duplicates']}",
                   f"{r['p50_ms']} ms", f"{r['p99_ms']} ms", f"{r['max_ms']} ms",
                   f"{r['read_api_cpu_ms_per_1000_items']} ms"]])


def _abuse(r: dict[str, Any]) -> list[str]:
    rows = []
    for n, rnd in enumerate(r["rounds"], 1):
        for phase, p in rnd.items():
            if phase == "ratios":
                continue
            rows.append([n, phase, f"{p['read_p50_ms']} / {p['read_p99_ms']} ms",
                         f"{p['fanout_lag_p50_ms']} / {p['fanout_lag_p99_ms']} ms", f"{p['normal_reads']:,}",
                         f"{p['read_api_rss_mb']['during']} MB"])
    ratios = r["ratios"]
    return [*table(["round", "phase", "normal read p50 / p99", "fan-out lag p50 / p99", "normal reads",
                    "read service RSS"], rows), "",
            "Median round's ratios to the baseline: " + "; ".join(
                f"{mode}: read p99 {v['read_p99']}x, fan-out lag p99 {v['fanout_lag_p99']}x"
                for mode, v in ratios.items()) + "."]


def _handlers(r: dict[str, Any]) -> list[str]:
    return table(["event", "CPU per event (best of rounds)", "events"],
                 [["a follow (its author's run one event long)", f"{r['cpu_us_per_follow']} µs", f"{r['follows']:,}"],
                  ["a post to its author's few followers", f"{r['cpu_us_per_post']} µs", f"{r['posts']:,}"]])


def _retries(r: dict[str, Any]) -> list[str]:
    us = r["us_per_call"]
    labels = {"direct": "awaited directly", "tenacity": "through a tenacity AsyncRetrying loop",
              "first_direct": "first try direct, tenacity only after a failure (the hot paths' shape)",
              "first_direct_failing_once": "the same, failing once then succeeding"}
    return [*table(["a call that succeeds", "µs per call"], [[labels.get(k, k), v] for k, v in us.items()]), "",
            f"Tenacity's loop costs {r['tenacity_over_first_direct']}x the first-try-direct shape per call "
            f"({r['calls']:,} calls per way, best of three rounds)."]


def _included(out: Path, part: str, name: str) -> list[str]:
    """A part's own Markdown report (bench.md, reads.md), with its headline command line left out."""
    path = out / part / name
    if not path.exists():
        return []
    lines = path.read_text().rstrip().splitlines()
    return lines[2:] if lines and lines[0].startswith("`") else lines


def _images(out: Path, part: str, root: Path) -> list[str]:
    plots = sorted((out / part).glob("*.png"))
    return [f"![{p.stem.replace('_', ' ')}]({p.relative_to(root).as_posix()})" for p in plots]


def markdown(out: Path, root: Path) -> str:
    """BENCHMARKS.md for the run in `out`; image links relative to `root` (where BENCHMARKS.md lives)."""
    out, root = out.resolve(), root.resolve()
    manifest, reports = load(out)
    m = manifest["machine"]
    lines = [
        "# Benchmarks", "",
        f"Every figure below comes from one run of `{manifest['command']}` on commit "
        f"`{manifest['commit']}`{' (with uncommitted changes)' if manifest.get('dirty') else ''}, "
        f"{manifest['started'][:10]}, on {m.get('cpu', '?')}, {m.get('cores', '?')} cores, "
        f"{m.get('memory_gib', '?')} GiB (Python {m.get('python', '?')}). The load generators, the servers "
        "(Kafka, Cassandra, Prometheus) and the pipeline's processes share those cores, as in a test "
        "deployment on one host.", "",
        "Reproduce: bring the local stack up (`fanout stack up`), then run the same command; it took "
        f"{manifest['seconds'] / 60:.0f} minutes here. Each part runs in keyspaces and topics of its own and "
        "drops them afterwards. Every part's raw report (JSON, every figure and the machine), full tables and "
        f"plots are in `{out.relative_to(root).as_posix() if out.is_relative_to(root) else out}/<part>/`.", "",
        "## Targets", "",
        *targets_table(reports), "",
    ]
    for part, (_, about) in PARTS.items():
        if part not in reports:
            continue
        done = manifest["parts"].get(part, {})
        on = f", commit `{done['commit']}`" if done.get("commit") not in (None, manifest["commit"]) else ""
        lines += [f"## {TITLES[part]}", "", about, "",
                  f"Command: `{done.get('command', '?')}` ({done.get('seconds', 0) / 60:.1f} min{on}).", ""]
        if part == "write":
            lines += _included(out, part, "bench.md")
        elif part == "reads":
            lines += _included(out, part, "reads.md")
        elif part == "stream":
            lines += _stream(reports[part])
        elif part == "abuse":
            lines += _abuse(reports[part])
        elif part == "notifications":
            lines += _included(out, part, "notifications.md")
        elif part == "handlers":
            lines += _handlers(reports[part])
        elif part == "retries":
            lines += _retries(reports[part])
        lines += ["", *_images(out, part, root), ""]
    lines += ["## Elsewhere", "",
              "- Containers: `fanout bench compose` measures the compose deployment beside the local stack "
              "(it needs Docker, so `fanout bench all` leaves it out); its report is in "
              "`docs/benchmarks/compose/`.",
              "- Faults: `make test-faults` kills servers and workers mid-fan-out and counts every row; "
              "[docs/faults.md](docs/faults.md) is written from its report.",
              "- How the figures changed over time, with the change behind each step: "
              "[docs/benchmarks/history.md](docs/benchmarks/history.md).", ""]
    return "\n".join(lines)
