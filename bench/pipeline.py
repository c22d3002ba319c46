"""`fanout bench pipeline`: fan-out throughput, end-to-end lag and read latency of the hybrid pipeline,
measured on the real local stack with real worker and read-service processes.

Scenarios, each with its own keyspace and topics:
  big-fanout   one post by an author with N followers (default 10,000; threshold raised above N so it
               is pushed): inbox rows per second from the post's acceptance to its last inbox write.
  steady-mix   a power-law graph, posts published at a fixed rate: inbox rows per second over the mix,
               end-to-end lag (post time to inbox write) p50/p99 from the worker's histogram.
  reads        readers following 0, 5 and 20 celebrities: feed read latency p50/p99 over HTTP at a fixed
               number of concurrent clients.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import Progress

from bench.workload import build_workload, power_law_graph
from deploy.processes import ProcessGroup, scrape
from fanout.cassandra import migrate
from fanout.events import Event, Followed, UserSeen
from fanout.ids import millis_of
from fanout.lag import wait_until_drained
from fanout.producer import EventProducer, ensure_topics
from fanout.settings import Settings

console = Console()


@dataclass
class Report:
    command: str
    machine: dict[str, Any]
    results: dict[str, Any] = field(default_factory=dict)


def scenario_settings(base: Settings, name: str, **overrides: Any) -> Settings:
    return base.isolated(f"bench-{name}{time.strftime('%H%M%S')}", **overrides)


def percentile(ascending: Sequence[float], q: float) -> float:
    """The q-quantile of sorted values by nearest rank (the value below which a share q of them lie)."""
    return ascending[min(len(ascending) - 1, int(len(ascending) * q))]


def histogram_quantile(samples: dict[str, float], before: dict[str, float], name: str, q: float) -> float:
    """Prometheus-style quantile (linear within a bucket) of the observations between two scrapes."""
    buckets = []
    for key, value in samples.items():
        if key.startswith(name + "_bucket{"):
            bound = key.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float(bound), value - before.get(key, 0.0)))  # float("+Inf") is inf
    buckets.sort()
    total = buckets[-1][1] if buckets else 0
    if total <= 0:
        return float("nan")
    rank, prev_le, prev_count = q * total, 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * (rank - prev_count) / max(count - prev_count, 1e-12)
        prev_le, prev_count = le, count
    return prev_le


def publish(producer: EventProducer, events: list[Event]) -> None:
    futures = [producer.send(e) for e in events]
    for f in futures:
        f.result(120)


def seed_follows(s: Settings, processes: ProcessGroup, producer: EventProducer, follows: list[Event],
                 what: str) -> float:
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task(f"seeding {what} through the pipeline", total=len(follows))
        for i in range(0, len(follows), 5000):
            publish(producer, follows[i : i + 5000])
            bar.advance(task, len(follows[i : i + 5000]))
    return wait_until_drained(s, timeout=1800, on_lag=lambda _: processes.check_alive())


def big_fanout(base: Settings, followers: int, log_dir: Path) -> dict[str, Any]:
    s = scenario_settings(base, "big", celebrity_threshold=followers * 2)
    ensure_topics(s)
    migrate(s)
    author = 10**9
    follows: list[Event] = [Followed(event_time=1_790_000_000_000 + i, follower_id=i + 1, followee_id=author)
                            for i in range(followers)]
    with ProcessGroup(s, log_dir / "big-fanout").start("worker") as processes:
        producer = EventProducer(s)
        seed_follows(s, processes, producer, follows, f"{followers:,} followers")
        worker = processes.url("worker")
        start_rows = scrape(worker).get("fanout_inbox_rows_written_total", 0.0)
        post = producer.new_post(author, "one post to many")
        publish(producer, [post])
        accepted = time.monotonic()
        accepted_ms = millis_of(post.post_id)
        done = done_wall = None
        while done is None and time.monotonic() - accepted < 300:
            if scrape(worker).get("fanout_inbox_rows_written_total", 0.0) - start_rows >= followers:
                done, done_wall = time.monotonic(), time.time()
            else:
                time.sleep(0.02)
        producer.close()
    if done is None or done_wall is None:
        raise TimeoutError("the big fan-out did not finish in 300 s")
    seconds = done - accepted
    return {"followers": followers, "chunk_size": s.chunk_size, "write_window": s.write_window,
            "seconds_from_ack_to_last_write": round(seconds, 3),
            "seconds_from_post_time_to_last_write": round(done_wall - accepted_ms / 1000, 3),
            "inbox_rows_per_second": round(followers / seconds)}


def steady_mix(base: Settings, users: int, rate: float, seconds: float, log_dir: Path) -> dict[str, Any]:
    s = scenario_settings(base, "mix", celebrity_threshold=max(50, users // 10))
    ensure_topics(s)
    migrate(s)
    graph = power_law_graph(users, seed=11, min_followers=3, celebrities=3, celebrity_followers=users // 5)
    n_posts = int(rate * seconds)
    workload = build_workload(graph, n_posts=n_posts, seed=11)
    with ProcessGroup(s, log_dir / "steady-mix").start("worker") as processes:
        producer = EventProducer(s)
        seed_follows(s, processes, producer, workload.follows, f"{len(workload.follows):,} follows")
        worker = processes.url("worker")
        before = scrape(worker)
        started = time.monotonic()
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task(f"publishing {n_posts} posts at {rate:.0f}/s", total=n_posts)
            for i, template in enumerate(workload.posts):
                # Fresh ids at publish time: the lag is measured from the real post time.
                post = producer.new_post(template.author_id, template.body)
                producer.send(post)
                bar.advance(task)
                pause = started + (i + 1) / rate - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
        wait_until_drained(s, timeout=600, on_lag=lambda _: processes.check_alive())
        elapsed = time.monotonic() - started
        after = scrape(worker)
        producer.close()
    rows = after.get("fanout_inbox_rows_written_total", 0) - before.get("fanout_inbox_rows_written_total", 0)
    lag = "fanout_end_to_end_lag_seconds"
    return {"users": users, "posts": n_posts, "rate_posts_per_second": rate, "inbox_rows": int(rows),
            "inbox_rows_per_second": round(rows / elapsed),
            "lag_p50_ms": round(histogram_quantile(after, before, lag, 0.5) * 1000, 1),
            "lag_p99_ms": round(histogram_quantile(after, before, lag, 0.99) * 1000, 1),
            "lag_max_at_most_s": _max_bucket(after, before, lag)}


def _max_bucket(after: dict[str, float], before: dict[str, float], name: str) -> float:
    """Upper bound of the highest non-empty bucket: the max lag, to the bucket's resolution."""
    counts = sorted((float(k.split('le="')[1].split('"')[0]), v - before.get(k, 0))
                    for k, v in after.items() if k.startswith(name + "_bucket{"))
    highest = 0.0
    prev = 0.0
    for le, count in counts:
        if count > prev:
            highest = le
        prev = count
    return highest


def reads(base: Settings, concurrency: int, requests: int, log_dir: Path) -> dict[str, Any]:
    threshold = 50
    s = scenario_settings(base, "reads", celebrity_threshold=threshold)
    ensure_topics(s)
    migrate(s)
    rng = random.Random(5)
    celebs = list(range(1_000_001, 1_000_021))
    normals = list(range(2_000_001, 2_000_051))
    groups = {0: list(range(1, 21)), 5: list(range(101, 121)), 20: list(range(201, 221))}
    follows: list[Event] = []
    t = iter(range(1_790_000_000_000, 1_800_000_000_000))
    fans = list(range(3_000_001, 3_000_001 + threshold))  # make every celebrity cross the threshold
    for c in celebs:
        follows += [Followed(event_time=next(t), follower_id=f, followee_id=c) for f in fans]
    for n_celebs, readers in groups.items():
        for r in readers:
            follows += [Followed(event_time=next(t), follower_id=r, followee_id=c) for c in celebs[:n_celebs]]
            follows += [Followed(event_time=next(t), follower_id=r, followee_id=a)
                        for a in rng.sample(normals, 30)]
    with ProcessGroup(s, log_dir / "reads").start("worker", "read-api") as processes:
        producer = EventProducer(s)
        seed_follows(s, processes, producer, follows, "reader graph")
        posts: list[Event] = []
        for author in celebs + normals:
            posts += [producer.new_post(author, f"post {i} by {author}") for i in range(25)]
        publish(producer, posts)
        wait_until_drained(s, timeout=600, on_lag=lambda _: processes.check_alive())
        producer.close()
        results = {}
        for n_celebs, readers in groups.items():
            latencies = asyncio.run(_load(processes.url("read-api"), readers, concurrency, requests))
            latencies.sort()
            results[f"following_{n_celebs}_celebrities"] = {
                "requests": len(latencies), "concurrency": concurrency,
                "p50_ms": round(percentile(latencies, 0.5) * 1000, 2),
                "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
                "max_ms": round(latencies[-1] * 1000, 2),
                "mean_ms": round(statistics.fmean(latencies) * 1000, 2)}
    return results


def regeneration(base: Settings, followees: int, posts_each: int, log_dir: Path) -> dict[str, Any]:
    """A reader following `followees` accounts comes back after FANOUT_ACTIVE_DAYS: latency of the first
    read (a read-time pull) and the time until the worker has rebuilt the inbox."""
    s = scenario_settings(base, "regen")
    ensure_topics(s)
    migrate(s)
    reader, authors = 5_000_000, list(range(6_000_001, 6_000_001 + followees))
    ten_days_ago = int(time.time() * 1000) - 10 * 86_400_000
    follows: list[Event] = [Followed(event_time=ten_days_ago + i, follower_id=reader, followee_id=a)
                            for i, a in enumerate(authors)]
    with ProcessGroup(s, log_dir / "regeneration").start("worker", "read-api") as processes:
        producer = EventProducer(s)
        seed_follows(s, processes, producer, [*follows, UserSeen(event_time=ten_days_ago + followees + 1,
                                                                  user_id=reader)], f"{followees} follows")
        publish(producer, [producer.new_post(a, f"post {i} by {a}") for a in authors for i in range(posts_each)])
        wait_until_drained(s, timeout=600, on_lag=lambda _: processes.check_alive())
        producer.close()
        skipped = scrape(processes.url("worker")).get("fanout_inactive_followers_skipped_total", 0.0)
        feed = processes.url("read-api") + f"/v1/users/{reader}/feed"
        started = time.perf_counter()
        first = httpx.get(feed, params={"limit": 20}, timeout=30).raise_for_status().json()
        first_read = time.perf_counter() - started
        rebuilt = None
        while time.perf_counter() - started < 300:
            if not httpx.get(feed, params={"limit": 20}, timeout=30).json()["regenerating"]:
                rebuilt = time.perf_counter() - started
                break
            time.sleep(0.02)
        inbox_rows = scrape(processes.url("worker")).get("fanout_backfilled_rows_total", 0.0)
    return {"followees": followees, "posts_per_followee": posts_each, "pushes_skipped_while_inactive": int(skipped),
            "first_read_regenerating": first["regenerating"], "first_read_items": len(first["items"]),
            "first_read_ms": round(first_read * 1000, 1),
            "seconds_until_inbox_rebuilt": round(rebuilt, 3) if rebuilt is not None else None,
            "inbox_rows_rebuilt": int(inbox_rows)}


async def _load(url: str, readers: list[int], concurrency: int, requests: int) -> list[float]:
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as http:
        async def client(n: int) -> None:
            rng = random.Random(n)
            for _ in range(requests // concurrency):
                started = time.perf_counter()
                response = await http.get(f"/v1/users/{rng.choice(readers)}/feed", params={"limit": 20})
                latencies.append(time.perf_counter() - started)
                response.raise_for_status()
                assert len(response.json()["items"]) == 20

        await asyncio.gather(*(client(n) for n in range(concurrency)))
    return latencies


def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem_kb = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal")))
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem_kb / 2**20, 1),
            "python": platform.python_version()}


SCENARIOS = ("big_fanout", "steady_mix", "reads", "regeneration")


def run(base: Settings, followers: int, users: int, rate: float, seconds: float, concurrency: int,
        requests: int, out_dir: Path, command: str, scenarios: Sequence[str] = SCENARIOS) -> Report:
    out_dir.mkdir(parents=True, exist_ok=True)
    log_dir = out_dir / "logs"
    report = Report(command=command, machine={**machine(), "kafka": base.kafka_version,
                                              "cassandra": base.cassandra_version})
    runs = {
        "big_fanout": lambda: big_fanout(base, followers, log_dir),
        "steady_mix": lambda: steady_mix(base, users, rate, seconds, log_dir),
        "reads": lambda: reads(base, concurrency, requests, log_dir),
        "regeneration": lambda: regeneration(base, 200, 5, log_dir),
    }
    for name in scenarios:
        console.rule(name)
        report.results[name] = runs[name]()
        console.print(report.results[name])
    (out_dir / "pipeline.json").write_text(json.dumps(report.__dict__, indent=2))
    if "reads" in report.results:
        plot(report, out_dir / "pipeline-reads.png")
    console.print(markdown(report))
    console.print(f"written to {out_dir}")
    return report


def markdown(report: Report) -> str:
    r = report.results
    lines = [f"`{report.command}` on {report.machine['cpu']} ({report.machine['cores']} cores)", "",
             "| figure | value |", "|---|---|"]
    if big := r.get("big_fanout"):
        lines += [f"| inbox rows/s, one {big['followers']:,}-follower post | {big['inbox_rows_per_second']:,} |",
                  f"| seconds from acceptance to last inbox write | {big['seconds_from_ack_to_last_write']} |"]
    if mix := r.get("steady_mix"):
        lines += [f"| inbox rows/s, steady mix ({mix['rate_posts_per_second']:.0f} posts/s, {mix['users']:,} users)"
                  f" | {mix['inbox_rows_per_second']:,} |",
                  f"| end-to-end fan-out lag p50 / p99 (steady mix) | "
                  f"{mix['lag_p50_ms']} ms / {mix['lag_p99_ms']} ms |"]
    for name, v in r.get("reads", {}).items():
        lines.append(f"| read p50 / p99 at {v['concurrency']} clients, {name.replace('_', ' ')} | "
                     f"{v['p50_ms']} ms / {v['p99_ms']} ms |")
    if regen := r.get("regeneration"):
        lines += [f"| returning user following {regen['followees']}: first read (pull) | {regen['first_read_ms']} ms |",
                  f"| returning user: first read until inbox rebuilt | {regen['seconds_until_inbox_rebuilt']} s |"]
    return "\n".join(lines)


def plot(report: Report, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reads_ = report.results["reads"]
    names = [n.split("_")[1] for n in reads_]
    fig, ax = plt.subplots(figsize=(6, 4))
    x = range(len(names))
    ax.bar([i - 0.2 for i in x], [v["p50_ms"] for v in reads_.values()], width=0.4, label="p50")
    ax.bar([i + 0.2 for i in x], [v["p99_ms"] for v in reads_.values()], width=0.4, label="p99")
    ax.set_xticks(list(x), [f"{n} celebrities" for n in names])
    ax.set_ylabel("feed read latency (ms)")
    ax.set_title(f"Read latency at {next(iter(reads_.values()))['concurrency']} concurrent clients")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

