"""`fanout bench`: push-only, pull-only and hybrid side by side on one workload, on the real stack,
against the bare cassandra-driver limits measured on the same Cassandra in the same run.

The follow graph (power law, a share of inactive users, readers who follow hundreds of accounts) is
bulk-loaded into each strategy's own keyspace as the follow handler would have left it: graph setup is
not what is measured. The measured sequence runs through the real processes: the same posts are
published to Kafka at a nominal rate and fanned out by a real worker, then the same feed reads are
made over HTTP to a real read service.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.report import BUCKETS, write_report
from bench.scenario import console, publish_at_rate, scenario_settings, server_pids
from bench.stats import cpu_seconds, histogram_quantile, histograms_by, machine, percentile
from bench.workload import Graph, power_law_graph
from deploy.processes import ProcessGroup, scrape
from fanout.api.auth import Tokens
from fanout.bootstrap import open_resources
from fanout.core.model import Activity, Strategy
from fanout.lag import wait_until_drained
from fanout.settings import Settings
from fanout.write.producer import EventProducer
from services import import_graph

DAY_MS = 86_400_000
WARM_UP_SECONDS = 5  # of posts at the nominal rate before each strategy's figures start
# The burst lasts from its first send to the worker's last inbox write, which the worker's own gauge of it
# tells after the fact (same host, same clock): nothing polls the worker meanwhile. Polling its row
# counter every 20 ms for the end cost the worker a large share of its CPU in the burst (the exposition
# of its metrics) and, at each still poll, a new Kafka login for the lag. The lag, asked
# this often over one connection, only tells when the burst is over.
LAG_POLL_SECONDS = 0.25


@dataclass
class BenchWorkload:
    graph: Graph
    inactive: set[int]
    post_authors: list[int]  # one entry per post, in publishing order
    readers: list[int]  # active users whose feeds are read, one entry per read
    celebrity: int  # a pulled author (in the hybrid) whose readability is timed

    def following(self) -> dict[int, set[int]]:
        return self.graph.following()


def build_workload(users: int, seed: int, exponent: float, inactive_share: float, posts: int, reads: int,
                   threshold: int, heavy_readers: int = 20, heavy_follows: int = 250) -> BenchWorkload:
    """A power-law graph with a few authors above the celebrity threshold (when the graph is large
    enough), one author just below it, and readers who follow hundreds of accounts."""
    rng = random.Random(seed)
    above = min(threshold + threshold // 10, users - 1)
    graph = power_law_graph(users, seed=seed, exponent=exponent, celebrities=3, celebrity_followers=above)
    near = max((u for u in graph.users if graph.follower_count(u) < threshold), key=graph.follower_count)
    extra = rng.sample([u for u in graph.users if u not in graph.followers[near] and u != near],
                       max(0, min(users - 2, threshold - threshold // 10) - graph.follower_count(near)))
    graph.followers[near] |= set(extra)  # just below the threshold: the biggest push fan-out
    heavy = rng.sample(graph.users, heavy_readers)
    for reader in heavy:
        for author in rng.sample(graph.users, heavy_follows):
            if author != reader:
                graph.followers[author].add(reader)
    inactive = set(rng.sample([u for u in graph.users if u not in heavy], int(users * inactive_share)))
    by_followers = sorted(graph.users, key=graph.follower_count, reverse=True)
    prolific = by_followers[: max(1, users // 100)]
    prolific += rng.sample(by_followers[len(prolific):], max(0, users // 10 - len(prolific)))
    post_authors = [rng.choice(prolific) if rng.random() < 0.8 else rng.choice(graph.users) for _ in range(posts)]
    # Every audience size posts: the biggest pushed author and the celebrities post a few times too.
    celebrities = [u for u in graph.users if graph.follower_count(u) >= threshold]
    for i, author in enumerate([near] * 6 + celebrities * 3):
        post_authors[(i * 97 + 13) % posts] = author
    following = graph.following()
    active_readers = [u for u in graph.users if u not in inactive and following.get(u)]
    readers = [rng.choice(heavy) if i % 4 == 0 else rng.choice(active_readers) for i in range(reads)]
    return BenchWorkload(graph, inactive, post_authors, readers, by_followers[0])


def load_graph(s: Settings, w: BenchWorkload | Any, now_ms: int, work_dir: Path) -> dict[str, Any]:
    """The follow graph through `fanout import follows` (the follow handler's own code, so edges, counts,
    tiers and celebrity sets are what the worker would leave), after the inactive users' last feed read
    (10 days ago), which the handler copies onto their edges as it would live."""
    away = now_ms - 10 * DAY_MS
    res = open_resources(s, storage=True)
    try:
        async def seen() -> None:
            await asyncio.gather(*(res.stores.readers.set_activity(u, Activity(away, False)) for u in w.inactive))

        asyncio.run(seen())
    finally:
        res.close()
    work_dir.mkdir(parents=True, exist_ok=True)
    path = work_dir / f"graph-{s.strategy}.csv"
    path.write_text("".join(f"{f},{a}\n" for a, fs in w.graph.followers.items() for f in sorted(fs)))
    return import_graph.run(s, path, event_time=now_ms - 20 * DAY_MS, console=console)


def run_strategy(base: Settings, strategy: str, w: BenchWorkload, rate: float, concurrency: int,
                 log_dir: Path) -> dict[str, Any]:
    s = scenario_settings(base, strategy, strategy=strategy)
    now = time.time_ns() // 1_000_000
    imported = load_graph(s, w, now, log_dir / "graphs")
    servers = server_pids(base)
    with ProcessGroup(s, log_dir / strategy).start("worker", "read-api") as processes:
        pids: dict[str, int | tuple[int, ...]] = {
            "worker": processes.procs["worker"].pid, "read-api": processes.procs["read-api"].pid,
            "cassandra": servers["cassandra"], "kafka": servers["kafka"]}
        worker = processes.url("worker")
        producer = EventProducer(s)
        # A warm-up, not counted: the first authors of the sequence for WARM_UP_SECONDS at the nominal rate,
        # so that the lag below is that of running processes, not of JVMs still compiling their write path
        # (on a just-started stack the first seconds are several times slower).
        warm = w.post_authors[: max(1, int(rate * WARM_UP_SECONDS))]
        publish_at_rate(producer, [(a, f"warm-up {i} by {a}") for i, a in enumerate(warm)], rate,
                        f"{strategy} warm-up")
        wait_until_drained(s, timeout=600, on_lag=lambda _: processes.check_alive())
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items() if pid}
        before = scrape(worker)
        half = len(w.post_authors) // 2
        # First half at the nominal rate: end-to-end lag under normal load.
        started = time.monotonic()
        publish_at_rate(producer, [(a, f"post {i} by {a}") for i, a in enumerate(w.post_authors[:half])], rate,
                        strategy)
        wait_until_drained(s, timeout=1800, on_lag=lambda _: processes.check_alive())
        middle = scrape(worker)
        # Second half as one burst: fan-out throughput, from the first send to the last inbox write (the
        # worker's gauge of it, LAG_POLL_SECONDS above), not to the next offset commit.
        burst_started = time.time()
        for i, author in enumerate(w.post_authors[half:], start=half):
            producer.send(producer.new_post(author, f"post {i} by {author}"))
        producer.flush()
        wait_until_drained(s, timeout=1800, poll=LAG_POLL_SECONDS, on_lag=lambda _: processes.check_alive())
        post_phase = time.monotonic() - started
        after = scrape(worker)
        burst_seconds = max(after.get("fanout_last_inbox_write_timestamp_seconds", 0.0) - burst_started, 1e-3)
        visible_ms = time_until_visible(processes, producer, s, w)
        producer.close()
        reads = asyncio.run(read_load(processes.url("read-api"), Tokens(s), w, concurrency, s.celebrity_threshold))
        cpu = {name: round(cpu_seconds(pid) - cpu_before[name], 2) for name, pid in pids.items() if pid}
    rows_name = "fanout_inbox_rows_written_total"
    rows = after.get(rows_name, 0) - before.get(rows_name, 0)
    burst_rows = after.get(rows_name, 0) - middle.get(rows_name, 0)
    lag = {}
    lag_name = "fanout_end_to_end_lag_seconds"
    lag_after, lag_before = histograms_by(middle, lag_name, "followers"), histograms_by(before, lag_name, "followers")
    for bucket in BUCKETS:
        sub_after, sub_before = lag_after.get(bucket), lag_before.get(bucket, {})
        if sub_after:
            lag[bucket] = {q: round(histogram_quantile(sub_after, sub_before, lag_name, p) * 1000, 1)
                           for q, p in (("p50_ms", 0.5), ("p99_ms", 0.99), ("max_ms", 1.0))}
    return {
        "strategy": strategy, "posts": len(w.post_authors), "inbox_rows": int(rows),
        "rows_per_post": round(rows / len(w.post_authors), 2), "inbox_bytes_logical": int(rows) * 24,
        "fanout_rows_per_s": round(burst_rows / burst_seconds), "burst_posts": len(w.post_authors) - half,
        "burst_seconds": round(burst_seconds, 2), "post_phase_s": round(post_phase, 2),
        "lag_by_followers": lag, "celebrity_post_visible_ms": visible_ms, "reads": reads, "cpu_s": cpu,
        "graph_import": imported,
    }


def time_until_visible(processes: ProcessGroup, producer: EventProducer, s: Settings, w: BenchWorkload) -> float:
    """Milliseconds from Kafka's ack of a post by the most-followed author until 10 of its active
    followers all see it at the head of their feed (their reads polled concurrently)."""
    sample = [f for f in sorted(w.graph.followers[w.celebrity]) if f not in w.inactive][:10]
    post = producer.new_post(w.celebrity, "is everyone seeing this?")

    async def poll() -> float:
        tokens = Tokens(s)
        async with httpx.AsyncClient(base_url=processes.url("read-api"), timeout=30) as http:
            async def sees(f: int) -> bool:
                items = (await http.get("/v1/feed", params={"limit": 1}, headers=tokens.headers(f))).json()["items"]
                return bool(items) and items[0]["post_id"] == post.post_id

            producer.send(post).result(30)
            acked = time.perf_counter()
            waiting = set(sample)
            while waiting and time.perf_counter() - acked < 120:
                pending = sorted(waiting)
                seen = await asyncio.gather(*(sees(f) for f in pending))
                waiting -= {f for f, ok in zip(pending, seen, strict=True) if ok}
            return (time.perf_counter() - acked) * 1000 if not waiting else float("nan")

    elapsed = asyncio.run(poll())
    wait_until_drained(s, timeout=300)
    return round(elapsed, 1)


async def read_load(url: str, tokens: Tokens, w: BenchWorkload, concurrency: int, threshold: int) -> dict[str, Any]:
    """The workload's feed reads at a fixed concurrency; latency by how many accounts and celebrities
    the reader follows."""
    following = w.following()
    celebs = {a for a, fs in w.graph.followers.items() if len(fs) >= threshold}
    samples: dict[str, list[float]] = defaultdict(list)
    queue = list(w.readers)
    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=60,
                                 limits=httpx.Limits(max_connections=concurrency)) as http:
        async def client() -> None:
            while queue:
                reader = queue.pop()
                auth = tokens.headers(reader)  # minted before the clock starts
                t0 = time.perf_counter()
                (await http.get("/v1/feed", params={"limit": 20}, headers=auth)).raise_for_status()
                latency = time.perf_counter() - t0
                n = len(following.get(reader, ()))
                c = len(following.get(reader, set()) & celebs)
                samples["all"].append(latency)
                samples["follows " + ("200+" if n >= 200 else "50-199" if n >= 50 else "<50")].append(latency)
                samples["celebrities " + ("3+" if c >= 3 else "1-2" if c else "0")].append(latency)

        await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    result: dict[str, Any] = {"concurrency": concurrency, "reads_per_s": round(len(samples["all"]) / elapsed, 1)}
    for group, values in sorted(samples.items()):
        values.sort()
        result[group] = {"n": len(values), "p50_ms": round(percentile(values, 0.5) * 1000, 2),
                         "p99_ms": round(percentile(values, 0.99) * 1000, 2),
                         "max_ms": round(values[-1] * 1000, 2)}
    result["latencies_ms"] = [round(v * 1000, 2) for v in samples["all"]]
    return result


def expected_rows(w: BenchWorkload, threshold: int) -> dict[str, int]:
    """What each strategy must write: push every follower; the hybrid only active followers of
    authors below the threshold; pull nothing."""
    push = sum(w.graph.follower_count(a) for a in w.post_authors)
    hybrid = sum(len(w.graph.followers[a] - w.inactive) for a in w.post_authors
                 if w.graph.follower_count(a) < threshold)
    return {"push": push, "hybrid": hybrid, "pull": 0}


def bench(base: Settings, users: int, seed: int, exponent: float, inactive_share: float, posts: int, reads: int,
          rate: float, concurrency: int, driver_rows: int, out: Path, command: str, big_followers: int = 10_000,
          follows: int = 30_000, import_edges: int = 1_000_000) -> dict[str, Any]:
    from bench import driver as bench_driver
    from bench import writepath

    w = build_workload(users, seed, exponent, inactive_share, posts, reads, base.celebrity_threshold)
    deliveries = expected_rows(w, base.celebrity_threshold)["push"]
    console.print(f"graph: {users:,} users, {sum(map(len, w.graph.followers.values())):,} follows, "
                  f"{len(w.inactive):,} inactive, {posts:,} posts = {deliveries:,} deliveries, {reads:,} reads")
    report: dict[str, Any] = {"command": command, "machine": {**machine(), "kafka": base.stack.kafka_version,
                                                            "cassandra": base.stack.cassandra_version},
                              "workload": {"users": users, "seed": seed, "exponent": exponent,
                                           "inactive_share": inactive_share, "posts": posts, "reads": reads,
                                           "rate_posts_per_s": rate, "deliveries": deliveries,
                                           "threshold": base.celebrity_threshold,
                                           "follows": sum(map(len, w.graph.followers.values())),
                                           "expected_rows": expected_rows(w, base.celebrity_threshold)},
                              "strategies": {}}
    for strategy in Strategy:
        console.rule(strategy)
        result = run_strategy(base, strategy, w, rate, concurrency, out / "logs")
        result["cpu_s_per_1000_deliveries"] = {k: round(v / (deliveries / 1000), 4) for k, v in result["cpu_s"].items()}
        report["strategies"][strategy] = result
        console.print({k: v for k, v in result.items() if k != "reads"})
    report["write_path"] = writepath.run(base, out, big_followers, follows, import_edges)
    console.rule("bare driver limits")
    report["driver"] = bench_driver.driver_limits(base, rows=driver_rows)
    write_report(report, out)
    return report
