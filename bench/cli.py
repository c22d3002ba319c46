"""`fanout bench` (and `fanout bench pipeline`) and `fanout demo`: the commands of the bench package,
registered on the `fanout` command by services/cli.py. Their modules are imported when a command runs,
so `fanout` itself starts without them (and without matplotlib)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from deploy.recorded import on_stack
from fanout.settings import Settings

BENCH_RESULTS = Path("bench-results")
bench_app = typer.Typer(help="Benchmarks on the real local stack (they print figures and write plots).")
console = Console(stderr=True)


def register(app: typer.Typer) -> None:
    """Add the `bench` group and the `demo` command to the `fanout` command."""
    app.add_typer(bench_app, name="bench")
    app.command()(demo)


def demo(
    users: int = typer.Option(2000, help="users in the generated graph"),
    posts: int = typer.Option(1500, help="posts to publish"),
    threshold: int = typer.Option(200, help="celebrity threshold for the demo graph"),
    seed: int = typer.Option(42),
) -> None:
    """Run the pipeline on a generated power-law graph against the running stack, and show the feeds."""
    from bench import demo as demo_run

    s = on_stack(Settings.load())
    demo_run.run(s, users, posts, threshold, seed, s.stack.state_dir / "demo-logs")


@bench_app.callback(invoke_without_command=True)
def bench(
    ctx: typer.Context,
    quick: bool = typer.Option(False, "--quick", help="a small run (under 3 minutes): checks, not figures"),
    users: int = typer.Option(30_000, help="users of the power-law graph"),
    seed: int = typer.Option(1),
    exponent: float = typer.Option(2.28, help="power-law exponent of follower counts (Kwak et al. 2010)"),
    inactive_share: float = typer.Option(0.4, help="share of users who have not read for 10 days"),
    posts: int = typer.Option(1_500, help="posts published, the same sequence for every strategy"),
    reads: int = typer.Option(2_000, help="feed reads by active users, per strategy"),
    rate: float = typer.Option(30.0, help="nominal posts per second"),
    concurrency: int = typer.Option(16, help="concurrent HTTP readers"),
    driver_rows: int = typer.Option(20_000, help="rows per request shape in the bare driver loops"),
    threshold: int = typer.Option(0, help="celebrity threshold (0: FANOUT_CELEBRITY_THRESHOLD)"),
    big_followers: int = typer.Option(10_000, help="followers of the one big fan-out"),
    follows: int = typer.Option(30_000, help="follow events per follows/s measurement"),
    import_edges: int = typer.Option(1_000_000, help="edges of the graph import"),
    out: Annotated[Path, typer.Option(help="where bench.json, bench.md and the plots go")] = BENCH_RESULTS,
) -> None:
    """Push-only, pull-only and hybrid on the same workload, against the bare driver's limits."""
    if ctx.invoked_subcommand is not None:
        return
    from bench import strategies
    from bench.scenario import scenarios_dropped

    if quick:
        users, posts, reads, rate, driver_rows = 2_000, 300, 300, 100.0, 2_000
        threshold = threshold or 300
        big_followers, follows, import_edges = 2_000, 3_000, 20_000
    base = on_stack(Settings.load(celebrity_threshold=threshold) if threshold else Settings.load())
    command = "fanout bench " + " ".join(sys.argv[2:])
    with scenarios_dropped():
        strategies.bench(base, users, seed, exponent, inactive_share, posts, reads,
                         rate, concurrency, driver_rows, out, command.strip(), big_followers, follows,
                         import_edges)
    Console().print((out / "bench.md").read_text())
    console.print(f"written: {out}/bench.json, bench.md, write_amplification.png, read_latency.png, "
                  "lag_by_followers.png, write_path.png")


@bench_app.command("compare")
def bench_compare(
    before: Annotated[Path, typer.Argument(help="bench.json of the run before a change")],
    after: Annotated[Path, typer.Argument(help="bench.json of the run after it")],
    out: Annotated[Path, typer.Option(help="where the table (compare.md) and plot (compare.png) go")] = BENCH_RESULTS,
) -> None:
    """Before/after of the write path's figures of two `fanout bench` runs: a Markdown table and a plot."""
    import json

    from bench.writepath_report import compare

    out.mkdir(parents=True, exist_ok=True)
    text = compare(json.loads(before.read_text()), json.loads(after.read_text()), out)
    Console().print(text)


@bench_app.command("pipeline")
def bench_pipeline(
    followers: int = typer.Option(10_000, help="followers of the author in the big fan-out"),
    users: int = typer.Option(5_000, help="users of the steady-mix graph"),
    rate: float = typer.Option(40.0, help="posts per second in the steady mix"),
    seconds: float = typer.Option(30.0, help="length of the steady mix"),
    concurrency: int = typer.Option(16, help="concurrent HTTP clients for the reads"),
    requests: int = typer.Option(1600, help="feed reads per reader group"),
    out: Annotated[Path, typer.Option(help="where the JSON report and PNG plot go")] = BENCH_RESULTS,
    scenarios: str = typer.Option("big_fanout,steady_mix,reads,regeneration", help="comma-separated subset"),
) -> None:
    """Fan-out rows/s (one big post, a steady mix), end-to-end lag, and read latency by celebrities followed."""
    from bench import pipeline
    from bench.scenario import scenarios_dropped

    command = "fanout bench pipeline " + " ".join(sys.argv[3:])
    chosen = [name.strip() for name in scenarios.split(",") if name.strip()]
    unknown = set(chosen) - set(pipeline.SCENARIOS)
    if unknown:
        console.print(f"[bold red]error:[/] unknown scenarios {sorted(unknown)}; choose from {pipeline.SCENARIOS}")
        raise typer.Exit(1)
    with scenarios_dropped():
        pipeline.run(on_stack(Settings.load()), followers, users, rate, seconds, concurrency, requests, out,
                     command.strip(), chosen)


@bench_app.command("reads")
def bench_reads(
    quick: bool = typer.Option(False, "--quick", help="a small, short run: checks, not figures"),
    users: int = typer.Option(5_000, help="users of the power-law graph of normal authors"),
    readers: int = typer.Option(40, help="readers per group (0/5/20/250 celebrities, 200 normal authors, returning)"),
    celebrities: int = typer.Option(300, help="celebrities in the graph"),
    threshold: int = typer.Option(200, help="celebrity threshold"),
    strategies: str = typer.Option("hybrid,pull", help="comma-separated: hybrid, pull, push"),
    workers: str = typer.Option("1,2", help="read service processes to measure the hybrid with, comma-separated"),
    rates: str = typer.Option("250,500,1000", help="fixed offered rates (reads/s), comma-separated"),
    seconds: float = typer.Option(15.0, help="length of each load run"),
    connections: int = typer.Option(16, help="wrk connections for the peak"),
    driver_reads: int = typer.Option(20_000, help="reads of the bare driver's inbox-page loop"),
    out: Annotated[Path, typer.Option(help="where reads.json, reads.md and the plots go")] = BENCH_RESULTS,
) -> None:
    """Feed reads/s and latency through the real read service (wrk, vegeta), hybrid vs pull-only, beside
    the bare driver's inbox-page loop."""
    from bench import reads as read_bench
    from bench.reads_report import markdown
    from bench.scenario import scenarios_dropped

    if quick:
        users, readers, celebrities, threshold, seconds, driver_reads = 1_000, 5, 260, 20, 3.0, 2_000
        rates, workers = "100", "1"
    command = "fanout bench reads " + " ".join(sys.argv[3:])
    with scenarios_dropped():
        report = read_bench.bench(on_stack(Settings.load()), users, readers, celebrities, threshold,
                                  [s.strip() for s in strategies.split(",") if s.strip()],
                                  [int(n) for n in workers.split(",")], [float(r) for r in rates.split(",")],
                                  seconds, connections, driver_reads, out, command.strip())
    Console().print(markdown(report))
    console.print(f"written: {out}/reads.json, reads.md, read_p99_by_rate.png, read_p99_by_group.png")


@bench_app.command("compose")
def bench_compose(
    nodes: Annotated[list[int], typer.Option(help="compose profiles to run: 1 and/or 3")] = [1, 3],  # noqa: B006
    followers: int = typer.Option(3_000, help="followers of the author of the burst"),
    posts: int = typer.Option(40, help="posts in the burst"),
    seconds: float = typer.Option(15.0, help="seconds of wrk reads per target"),
    connections: int = typer.Option(16, help="wrk connections"),
    out: Annotated[Path, typer.Option(help="bench.json, bench.md, compose.png")] = BENCH_RESULTS / "compose",
) -> None:
    """The same burst and reads on `fanout stack up`'s processes and on docker compose (1 and 3 nodes)."""
    from bench import compose as compose_bench

    rows = compose_bench.run(on_stack(Settings.load()), nodes, out, followers=followers, posts=posts, seconds=seconds,
                             connections=connections)
    console.print(compose_bench.table(rows))


@bench_app.command("abuse")
def bench_abuse(
    readers: int = typer.Option(300, help="normal readers (each follows 5 authors)"),
    authors: int = typer.Option(30, help="normal authors"),
    rate: float = typer.Option(20.0, help="normal posts per second"),
    seconds: float = typer.Option(30.0, help="how long each phase lasts"),
    concurrency: int = typer.Option(8, help="normal users' concurrent feed reads"),
    streams: int = typer.Option(500, help="live streams the abuser opens and never reads"),
    rounds: int = typer.Option(3, min=1, help="baseline and abuse phases, in turn; the median round's ratios count"),
    out: Annotated[Path, typer.Option(help="where abuse.json and the plot go")] = BENCH_RESULTS / "abuse",
) -> None:
    """Normal users' read and fan-out p99 beside one abusing user, against the same run without it."""
    from bench import abuse
    from bench.scenario import scenarios_dropped

    command = "fanout bench abuse " + " ".join(sys.argv[3:])
    with scenarios_dropped():
        report = abuse.bench(on_stack(Settings.load()), readers, authors, rate, seconds, concurrency, streams, rounds,
                             out, command.strip())
    Console().print_json(data=report)
    console.print(f"written: {out}/abuse.json, abuse.png")


@bench_app.command("stream")
def bench_stream(
    readers: int = typer.Option(500, help="readers connected to the live feed"),
    authors: int = typer.Option(200, help="normal authors (each reader follows 5, and one celebrity)"),
    rate: float = typer.Option(30.0, help="posts per second"),
    seconds: float = typer.Option(30.0, help="how long posts are published"),
    out: Annotated[Path, typer.Option(help="where stream.json and the plot go")] = BENCH_RESULTS,
) -> None:
    """Acceptance-to-arrival latency of live feed items with many connected readers, and its CPU cost."""
    from bench import stream
    from bench.scenario import scenarios_dropped

    command = "fanout bench stream " + " ".join(sys.argv[3:])
    with scenarios_dropped():
        report = stream.bench(on_stack(Settings.load()), readers, authors, rate, seconds, out, command.strip())
    Console().print_json(data=report)
    console.print(f"written: {out}/stream.json, stream_latency.png")


@bench_app.command("notifications")
def bench_notifications(
    rate: float = typer.Option(200.0, help="likes per second in the quiet and burst runs"),
    seconds: float = typer.Option(20.0, help="length of each of those runs"),
    followers: int = typer.Option(100_000, help="inboxes of the one pushed post of the burst"),
    burst_posts: int = typer.Option(1_500, help="other posts of the burst"),
    flood: int = typer.Option(30_000, help="likes published at once, for likes/s"),
    hot: int = typer.Option(10_000, help="of those, likes of one post"),
    probers: int = typer.Option(4, help="probes timed side by side, each one every half second"),
    out: Annotated[Path, typer.Option(help="where notifications.json, .md and .png go")] = BENCH_RESULTS,
) -> None:
    """Notification delivery p50/p99, quiet and while the worker is buried in bulk work; likes/s with exact counts."""
    import json

    from bench import notifications
    from bench.all import _git
    from bench.scenario import scenarios_dropped

    with scenarios_dropped():
        result = notifications.bench(on_stack(Settings.load()), rate, seconds, followers, burst_posts, flood, hot,
                                     out / "work", probers)
    result = {"command": "fanout bench notifications " + " ".join(sys.argv[3:]),
              "commit": _git("rev-parse", "--short", "HEAD"), **result}
    out.mkdir(parents=True, exist_ok=True)
    (out / "notifications.json").write_text(json.dumps(result, indent=2))
    Console().print(notifications.report(result, out))
    console.print(f"written: {out}/notifications.json, notifications.md, notifications.png")


@bench_app.command("retries")
def bench_retries(
    calls: int = typer.Option(200_000, help="calls per way, per round"),
    out: Annotated[Path, typer.Option(help="where retries.json goes")] = BENCH_RESULTS / "retries",
) -> None:
    """What a call costs through tenacity, directly, and first-try-direct (no servers)."""
    import json

    from bench import retries

    report = {"command": "fanout bench retries " + " ".join(sys.argv[3:]), **retries.bench(calls)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "retries.json").write_text(json.dumps(report, indent=2))
    Console().print_json(data=report)


@bench_app.command("handlers")
def bench_handlers(
    follows: int = typer.Option(30_000, help="follow events, each author's run one event long"),
    posts: int = typer.Option(10_000, help="posts, each to the few followers its author has by then"),
    rounds: int = typer.Option(3, min=1, help="rounds; the least CPU counts"),
    out: Annotated[Path, typer.Option(help="where handlers.json goes")] = BENCH_RESULTS / "handlers",
) -> None:
    """The worker's own CPU per follow and per post, on the in-memory adapter (no servers)."""
    import json

    from bench import handlers

    report = {"command": "fanout bench handlers " + " ".join(sys.argv[3:]), **handlers.bench(follows, posts, rounds)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "handlers.json").write_text(json.dumps(report, indent=2))
    Console().print_json(data=report)


@bench_app.command("follows")
def bench_follows(
    follows: int = typer.Option(15_000, help="follow events per round"),
    order: str = typer.Option("live", help="live (authors interleaved) or by_author (each author's run together)"),
    rounds: int = typer.Option(4, min=1, help="rounds; the medians count"),
    out: Annotated[Path, typer.Option(help="where follows.json goes")] = BENCH_RESULTS / "follows",
) -> None:
    """Follows/s of one worker through Kafka, several rounds: the write path's noisiest figure, alone."""
    import json

    from bench import writepath
    from bench.scenario import scenarios_dropped

    base = on_stack(Settings.load())
    with scenarios_dropped():
        report = {"command": "fanout bench follows " + " ".join(sys.argv[3:]),
                  **writepath.follows_rounds(base, follows, order, rounds, out / "logs")}
    out.mkdir(parents=True, exist_ok=True)
    (out / "follows.json").write_text(json.dumps(report, indent=2))
    Console().print_json(data=report)


@bench_app.command("all")
def bench_all(
    quick: bool = typer.Option(False, "--quick", help="every part small (about 10 minutes): checks, not figures"),
    out: Annotated[Path, typer.Option(help="where each part's report and all.json go")] = Path("docs/benchmarks"),
    markdown: Annotated[Path, typer.Option(help="the summary written from them")] = Path("BENCHMARKS.md"),
    only: Annotated[list[str] | None, typer.Option(help="run only this part (repeatable), keeping the others' "
                                                        "reports and records of an earlier run")] = None,
) -> None:
    """Every benchmark of the running stack, one after the other, then BENCHMARKS.md with the targets computed."""
    from bench import all as all_parts

    on_stack(Settings.load())  # fails early, with the reason, when the stack is not up
    command = ("fanout bench all " + " ".join(sys.argv[3:])).strip()
    manifest = all_parts.run(out, markdown, quick, command, console, only)
    console.print(f"written: {markdown}, {out}/all.json and every part's report ({manifest['seconds'] / 60:.0f} min)")
