"""The `fanout` command: one entry point for every process and tool of the project."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from deploy import stack
from fanout.events import Event
from fanout.producer import EventProducer, PublishError
from fanout.settings import Settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Hybrid feed fan-out pipeline.")
stack_app = typer.Typer(no_args_is_help=True, help="Local Kafka, Cassandra and Prometheus (real servers).")
app.add_typer(stack_app, name="stack")
console = Console(stderr=True)


def _fail(exc: Exception) -> None:
    console.print(f"[bold red]error:[/] {exc}")
    raise typer.Exit(1)


@stack_app.command("up")
def stack_up() -> None:
    """Start Kafka, Cassandra and Prometheus (what is not running yet) and wait until each is ready."""
    s = Settings.load()
    t0 = time.monotonic()
    try:
        with console.status("starting the stack") as spinner:

            def say(message: str) -> None:
                spinner.update(message)
                console.log(message)

            statuses = stack.up(s, say=say)
    except (stack.StackError, KeyboardInterrupt) as exc:
        _fail(exc if isinstance(exc, stack.StackError) else stack.StackError("interrupted; stopped what started"))
        return
    _print_status(statuses)
    console.print(f"stack ready in {time.monotonic() - t0:.1f}s; stop it with [bold]fanout stack down[/]")


@stack_app.command("down")
def stack_down(wipe: bool = typer.Option(False, "--wipe", help="also delete the servers' data")) -> None:
    """Stop the servers this stack started (by pid); data is kept unless --wipe."""
    stack.down(Settings.load(), wipe=wipe, say=console.print)


@stack_app.command("status")
def stack_status() -> None:
    """Show each server up or down."""
    statuses = stack.status(Settings.load())
    _print_status(statuses)
    if not all(st.ready for st in statuses):
        raise typer.Exit(3)


@stack_app.command("logs")
def stack_logs(
    name: str = typer.Argument(..., help="kafka, cassandra or prometheus"),
    lines: int = typer.Option(50, "-n", "--lines"),
    follow: bool = typer.Option(False, "-f", "--follow"),
) -> None:
    """Show a server's log."""
    try:
        for chunk in stack.follow_log(stack.server_by_name(Settings.load(), name), lines, follow):
            sys.stdout.write(chunk)
            sys.stdout.flush()
    except stack.StackError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        pass


def _print_status(statuses: list[stack.Status]) -> None:
    table = Table("server", "state", "pid", "listens on", "memory")
    for st in statuses:
        state = "[green]up[/]" if st.ready else ("[yellow]starting[/]" if st.pid else "[red]down[/]")
        mem = f"{stack.resident_memory_mb(st.pid):.0f} MiB" if st.pid else "-"
        table.add_row(st.name, state, str(st.pid or "-"), st.address, mem)
    Console().print(table)
    # Plain lines, not a table column: a path must never be cut to the terminal width.
    for st in statuses:
        typer.echo(f"{st.name} log: {st.log}")


@app.command()
def migrate() -> None:
    """Create the Kafka topics and the Cassandra keyspace and tables (idempotent)."""
    from fanout.adapters.cassandra import migrate as migrate_cassandra
    from fanout.producer import ensure_topics

    s = Settings.load()
    created = ensure_topics(s)
    console.print(f"kafka topics: created {created or 'none'} (events, chunks, dead letters)")
    statements = migrate_cassandra(s)
    console.print(f"cassandra keyspace {s.keyspace}: {len(statements)} statements applied")


@app.command()
def worker(loglevel: str = typer.Option("info", help="Faust log level")) -> None:
    """Run the stream processor (Faust worker) with metrics on FANOUT_WORKER_METRICS_PORT."""
    from services import worker as worker_process

    worker_process.run(Settings.load(), loglevel)


@app.command("read-api")
def read_api() -> None:
    """Serve the merged feed over HTTP on FANOUT_READ_API_PORT."""
    from services import read_api as read_service

    read_service.run(Settings.load())


@app.command("ingest-api")
def ingest_api() -> None:
    """Accept events over HTTP on FANOUT_INGEST_API_PORT and publish them to Kafka."""
    from services import ingest_api as ingest_service

    ingest_service.run(Settings.load())


publish_app = typer.Typer(no_args_is_help=True, help="Publish one event to Kafka (waits for the broker's ack).")
app.add_typer(publish_app, name="publish")


@publish_app.command("post")
def publish_post(author_id: int, body: str) -> None:
    """Publish a new post by AUTHOR_ID."""
    _publish(lambda p: p.publish_post(author_id, body))


@publish_app.command("delete")
def publish_delete(author_id: int, post_id: int) -> None:
    """Delete POST_ID of AUTHOR_ID."""
    _publish(lambda p: p.delete_post(author_id, post_id))


@publish_app.command("follow")
def publish_follow(follower_id: int, followee_id: int) -> None:
    """FOLLOWER_ID starts following FOLLOWEE_ID."""
    _publish(lambda p: p.follow(follower_id, followee_id))


@publish_app.command("unfollow")
def publish_unfollow(follower_id: int, followee_id: int) -> None:
    """FOLLOWER_ID stops following FOLLOWEE_ID."""
    _publish(lambda p: p.unfollow(follower_id, followee_id))


def _publish(action: Callable[[EventProducer], Event]) -> None:
    from fanout.events import encode

    s = Settings.load()
    producer = EventProducer(s, node_id=s.node_id)
    try:
        event = action(producer)
    except PublishError as exc:
        _fail(exc)
        return
    finally:
        producer.close()
    typer.echo(encode(event).decode())


@app.command()
def demo(
    users: int = typer.Option(2000, help="users in the generated graph"),
    posts: int = typer.Option(1500, help="posts to publish"),
    threshold: int = typer.Option(200, help="celebrity threshold for the demo graph"),
    seed: int = typer.Option(42),
) -> None:
    """Run the pipeline on a generated power-law graph against the running stack, and show the feeds."""
    from services import demo as demo_run

    s = Settings.load()
    demo_run.run(s, users, posts, threshold, seed, s.stack.state_dir / "demo-logs")


BENCH_RESULTS = Path("bench-results")
bench_app = typer.Typer(help="Benchmarks on the real local stack (they print figures and write plots).")
app.add_typer(bench_app, name="bench")


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
    out: Annotated[Path, typer.Option(help="where bench.json, bench.md and the plots go")] = BENCH_RESULTS,
) -> None:
    """Push-only, pull-only and hybrid on the same workload, against the bare driver's limits."""
    if ctx.invoked_subcommand is not None:
        return
    from services import bench_strategies

    if quick:
        users, posts, reads, rate, driver_rows = 2_000, 300, 300, 100.0, 2_000
        threshold = threshold or 300
    base = Settings.load(celebrity_threshold=threshold) if threshold else Settings.load()
    command = "fanout bench " + " ".join(sys.argv[2:])
    report = bench_strategies.bench(base, users, seed, exponent, inactive_share, posts, reads,
                                    rate, concurrency, driver_rows, out, command.strip())
    from services.bench_report import markdown

    Console().print(markdown(report))
    console.print(f"written: {out}/bench.json, bench.md, write_amplification.png, read_latency.png, "
                  "lag_by_followers.png")


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
    from services import bench_pipeline

    command = "fanout bench pipeline " + " ".join(sys.argv[3:])
    chosen = [name.strip() for name in scenarios.split(",") if name.strip()]
    unknown = set(chosen) - set(bench_pipeline.SCENARIOS)
    if unknown:
        _fail(ValueError(f"unknown scenarios {sorted(unknown)}; choose from {bench_pipeline.SCENARIOS}"))
    bench_pipeline.run(Settings.load(), followers, users, rate, seconds, concurrency, requests, out, command.strip(),
                       chosen)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
