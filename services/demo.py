"""`fanout demo`: the hybrid pipeline on a generated social graph, on the running local stack.

Starts a worker, the ingest and the read service; seeds a power-law graph with celebrities; publishes
posts (some through the ingest HTTP API); waits until fan-out is done; prints a few merged feeds and the
inbox writes the hybrid saved against pushing everything. Stops the processes it started, not the stack.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fanout.cassandra import migrate
from fanout.events import Event
from fanout.lag import consumer_lag
from fanout.producer import EventProducer, ensure_topics
from fanout.settings import Settings
from services.processes import ProcessGroup
from services.workload import Workload, build_workload, expected_celebrities, expected_feeds, power_law_graph

console = Console()


def progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console)


def publish_all(producer: EventProducer, events: Sequence[Event], what: str) -> None:
    with progress() as bar:
        task = bar.add_task(f"publishing {what}", total=len(events))
        futures = []
        for e in events:
            futures.append(producer.send(e))
            if len(futures) >= 2000:
                for f in futures:
                    f.result(60)
                bar.advance(task, len(futures))
                futures = []
        for f in futures:
            f.result(60)
        bar.advance(task, len(futures))


def wait_processed(settings: Settings, processes: ProcessGroup, what: str, timeout: float = 600) -> float:
    """Wait until the worker group has no lag, with a progress bar; returns seconds waited."""
    started = time.monotonic()
    with progress() as bar:
        first = consumer_lag(settings)
        task = bar.add_task(f"fan-out of {what}", total=max(first, 1))
        while True:
            processes.check_alive()
            lag = consumer_lag(settings)
            bar.update(task, total=max(first, lag, 1), completed=max(first, lag, 1) - lag)
            if lag == 0:
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"still {lag} events behind after {timeout:.0f}s")
            time.sleep(0.5)


def worker_counter(processes: ProcessGroup, name: str) -> float:
    with urllib.request.urlopen(processes.url("worker") + "/metrics", timeout=5) as r:
        return sum(float(line.rsplit(" ", 1)[1]) for line in r.read().decode().splitlines()
                   if line.startswith(name + " ") or line.startswith(name + "{"))


def run(base: Settings, users: int, posts: int, threshold: int, seed: int, log_dir: Path) -> None:
    run_id = time.strftime("%Y%m%d%H%M%S")
    s = Settings.load(
        state_dir=base.state_dir, cache_dir=base.cache_dir,
        keyspace=f"demo_{run_id}", events_topic=f"demo-{run_id}.author-events",
        chunks_topic=f"demo-{run_id}.fanout-chunks", dead_letter_topic=f"demo-{run_id}.dead-letter",
        app_id=f"fanout-demo-{run_id}", celebrity_threshold=threshold, chunk_size=min(base.chunk_size, 500),
    )
    console.rule("[bold]Fanout demo: hybrid fan-out on real Kafka + Cassandra")
    console.print(f"keyspace [bold]{s.keyspace}[/], topics [bold]demo-{run_id}.*[/], "
                  f"celebrity threshold [bold]{threshold}[/] followers, chunk size {s.chunk_size}")
    ensure_topics(s)
    migrate(s)
    graph = power_law_graph(users, seed=seed, min_followers=2, celebrities=2, celebrity_followers=threshold * 2)
    workload = build_workload(graph, n_posts=posts, seed=seed, delete_share=0.02, unfollow_share=0.02)
    celebs = expected_celebrities(workload, threshold, s.celebrity_demote_ratio)
    console.print(f"graph: {users} users, {sum(map(len, graph.followers.values()))} follows, "
                  f"{len(celebs)} celebrities (>= {threshold} followers), {posts} posts")

    with ProcessGroup(s, log_dir / run_id) as processes:
        with console.status("starting worker, read service and ingest service"):
            processes.start("worker", "read-api", "ingest-api")
        console.print(f"read API {processes.url('read-api')}, ingest API {processes.url('ingest-api')}, "
                      f"worker metrics {processes.url('worker')}/metrics; logs in {log_dir / run_id}")
        producer = EventProducer(s)
        try:
            publish_all(producer, workload.follows, "follows")
            wait_processed(s, processes, "follows")
            # A few posts through the ingest HTTP API, as a client would send them; the rest in bulk.
            via_http = []
            with httpx.Client(base_url=processes.url("ingest-api"), timeout=30) as http:
                for author in sorted(celebs)[:1] + [graph.users[0]]:
                    r = http.post("/v1/posts", json={"author_id": author, "body": f"hello from {author} over HTTP"})
                    r.raise_for_status()
                    via_http.append((author, r.json()["post_id"]))
            started = time.monotonic()
            publish_all(producer, [*workload.posts, *workload.deletes], "posts and deletes")
            wait_processed(s, processes, "posts")
            elapsed = time.monotonic() - started
        finally:
            producer.close()
        show_feeds(processes, workload, celebs)
        show_savings(processes, workload, celebs, via_http, elapsed)
    console.print("demo processes stopped; the stack keeps running ([bold]make down[/] stops it)")


def show_feeds(processes: ProcessGroup, workload: Workload, celebs: set[int]) -> None:
    following = workload.graph.following()
    users = workload.graph.users
    feeds = expected_feeds(workload)
    # Readers worth looking at: the fullest feeds among users who follow 1, 2+ and no celebrities.
    def celebs_followed(u: int) -> int:
        return len(following.get(u, set()) & celebs)

    groups = [[u for u in users if celebs_followed(u) == 0 and following.get(u)],
              [u for u in users if celebs_followed(u) == 1], [u for u in users if celebs_followed(u) >= 2]]
    readers = [max(group, key=lambda u: len(feeds[u])) for group in groups if group]
    with httpx.Client(base_url=processes.url("read-api"), timeout=30) as http:
        for reader in readers:
            feed = http.get(f"/v1/users/{reader}/feed", params={"limit": 6}).raise_for_status().json()
            follows = following.get(reader, set())
            table = Table(title=f"feed of user {reader}: follows {len(follows)} accounts, "
                                f"{len(follows & celebs)} of them celebrities", title_justify="left")
            table.add_column("post id")
            table.add_column("author")
            table.add_column("delivered by")
            table.add_column("body")
            for item in feed["items"]:
                pulled = item["author_id"] in celebs
                table.add_row(str(item["post_id"]), str(item["author_id"]),
                              "pull (celebrity timeline)" if pulled else "push (inbox)", item["body"])
            console.print(table)
            console.print(f"  next_cursor: {feed['next_cursor']}")


def show_savings(processes: ProcessGroup, workload: Workload, celebs: set[int], via_http: list[tuple[int, int]],
                 elapsed: float) -> None:
    graph = workload.graph
    authors = [p.author_id for p in workload.posts] + [a for a, _ in via_http]
    push_everything = sum(graph.follower_count(a) for a in authors)
    hybrid = worker_counter(processes, "fanout_inbox_rows_written_total")
    table = Table(title="inbox writes: hybrid against pushing everything", title_justify="left")
    table.add_column("strategy")
    table.add_column("inbox rows", justify="right")
    table.add_row("push everything (every author)", f"{push_everything:,}")
    table.add_row("hybrid (celebrities pulled at read)", f"{hybrid:,.0f}")
    table.add_row("saved", f"{push_everything - hybrid:,.0f} ({1 - hybrid / max(push_everything, 1):.0%})")
    console.print(table)
    push = worker_counter(processes, 'fanout_posts_total{tier="push"}')
    pull = worker_counter(processes, 'fanout_posts_total{tier="pull"}')
    console.print(f"posts by tier: push {push:.0f}, pull {pull:.0f}; "
                  f"{len(workload.posts)} posts fanned out in {elapsed:.1f}s "
                  f"({hybrid / max(elapsed, 1e-9):,.0f} inbox rows/s)")
