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
import random
import statistics
import time
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx

from bench.report import PipelineReport, pipeline_markdown, pipeline_plot
from bench.scenario import console, publish, publish_at_rate, scenario_settings, seed_follows, server_pids
from bench.stats import CpuMeter, highest_bucket, histogram_quantile, machine, per_1000, percentile
from bench.workload import build_workload, power_law_graph
from deploy.processes import ProcessGroup, scrape
from fanout.api.auth import Tokens
from fanout.core.events import Event, Followed, UserSeen
from fanout.core.ids import millis_of
from fanout.lag import wait_until_drained
from fanout.settings import Settings
from fanout.write.producer import EventProducer


def big_fanout(base: Settings, followers: int, log_dir: Path) -> dict[str, Any]:
    s = scenario_settings(base, "big", celebrity_threshold=followers * 2)
    author = 10**9
    follows: list[Event] = [Followed(event_time=1_790_000_000_000 + i, follower_id=i + 1, followee_id=author)
                            for i in range(followers)]
    with ProcessGroup(s, log_dir / "big-fanout").start("worker") as processes:
        producer = EventProducer(s)
        seed_follows(s, processes, producer, follows, f"{followers:,} followers")
        worker = processes.url("worker")
        start_rows = scrape(worker).get("fanout_inbox_rows_written_total", 0.0)
        cpu = CpuMeter({"worker": processes.procs["worker"].pid, **server_pids(base)})
        post = producer.new_post(author, "one post to many")
        publish(producer, [post])
        accepted = time.time()
        accepted_ms = millis_of(post.post_id)
        # Timed by the worker's gauge of its last inbox write, read once it is over: nothing polls the
        # worker meanwhile (see bench/strategies.py).
        wait_until_drained(s, timeout=300, poll=0.25, on_lag=lambda _: processes.check_alive())
        after = scrape(worker)
        spent = cpu.spent()
        producer.close()
    written = after.get("fanout_inbox_rows_written_total", 0.0) - start_rows
    if written < followers:
        raise RuntimeError(f"the big fan-out wrote {written:.0f} of {followers} inbox rows")
    done_wall = after["fanout_last_inbox_write_timestamp_seconds"]
    seconds = max(done_wall - accepted, 1e-3)
    return {"followers": followers, "chunk_size": s.chunk_size, "write_window": s.write_window,
            "seconds_from_ack_to_last_write": round(seconds, 3),
            "seconds_from_post_time_to_last_write": round(done_wall - accepted_ms / 1000, 3),
            "inbox_rows_per_second": round(followers / seconds), "cpu_s": spent,
            "cpu_s_per_1000_deliveries": per_1000(spent, followers)}


def steady_mix(base: Settings, users: int, rate: float, seconds: float, log_dir: Path) -> dict[str, Any]:
    s = scenario_settings(base, "mix", celebrity_threshold=max(50, users // 10))
    graph = power_law_graph(users, seed=11, min_followers=3, celebrities=3, celebrity_followers=users // 5)
    n_posts = int(rate * seconds)
    workload = build_workload(graph, n_posts=n_posts, seed=11)
    with ProcessGroup(s, log_dir / "steady-mix").start("worker") as processes:
        producer = EventProducer(s)
        seed_follows(s, processes, producer, workload.follows, f"{len(workload.follows):,} follows")
        worker = processes.url("worker")
        before = scrape(worker)
        started = time.monotonic()
        publish_at_rate(producer, [(p.author_id, p.body) for p in workload.posts], rate, "publishing")
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
            "lag_max_at_most_s": highest_bucket(after, before, lag)}


def reads(base: Settings, concurrency: int, requests: int, log_dir: Path) -> dict[str, Any]:
    threshold = 50
    s = scenario_settings(base, "reads", celebrity_threshold=threshold)
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
            latencies = asyncio.run(_load(processes.url("read-api"), Tokens(s), readers, concurrency, requests))
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
    reader, authors = 5_000_000, list(range(6_000_001, 6_000_001 + followees))
    ten_days_ago = int(time.time() * 1000) - 10 * 86_400_000
    follows: list[Event] = [Followed(event_time=ten_days_ago + i, follower_id=reader, followee_id=a)
                            for i, a in enumerate(authors)]
    with ProcessGroup(s, log_dir / "regeneration").start("worker", "read-api") as processes:
        producer = EventProducer(s)
        with closing(EventProducer(s, principal="reader")) as reads:  # as the read service records a read
            publish(reads, [UserSeen(event_time=ten_days_ago + followees + 1, user_id=reader)])
        seed_follows(s, processes, producer, follows, f"{followees} follows")
        publish(producer, [producer.new_post(a, f"post {i} by {a}") for a in authors for i in range(posts_each)])
        wait_until_drained(s, timeout=600, on_lag=lambda _: processes.check_alive())
        producer.close()
        skipped = scrape(processes.url("worker")).get("fanout_inactive_followers_skipped_total", 0.0)
        feed, auth = processes.url("read-api") + "/v1/feed", Tokens(s).headers(reader)
        started = time.perf_counter()
        first = httpx.get(feed, params={"limit": 20}, headers=auth, timeout=30).raise_for_status().json()
        first_read = time.perf_counter() - started
        rebuilt = None
        while time.perf_counter() - started < 300:
            if not httpx.get(feed, params={"limit": 20}, headers=auth, timeout=30).json()["regenerating"]:
                rebuilt = time.perf_counter() - started
                break
            time.sleep(0.02)
        inbox_rows = scrape(processes.url("worker")).get("fanout_backfilled_rows_total", 0.0)
    return {"followees": followees, "posts_per_followee": posts_each, "pushes_skipped_while_inactive": int(skipped),
            "first_read_regenerating": first["regenerating"], "first_read_items": len(first["items"]),
            "first_read_ms": round(first_read * 1000, 1),
            "seconds_until_inbox_rebuilt": round(rebuilt, 3) if rebuilt is not None else None,
            "inbox_rows_rebuilt": int(inbox_rows)}


async def _load(url: str, tokens: Tokens, readers: list[int], concurrency: int, requests: int) -> list[float]:
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as http:
        async def client(n: int) -> None:
            rng = random.Random(n)
            for _ in range(requests // concurrency):
                auth = tokens.headers(rng.choice(readers))  # minted before the clock starts
                started = time.perf_counter()
                response = await http.get("/v1/feed", params={"limit": 20}, headers=auth)
                latencies.append(time.perf_counter() - started)
                response.raise_for_status()
                assert len(response.json()["items"]) == 20

        await asyncio.gather(*(client(n) for n in range(concurrency)))
    return latencies


SCENARIOS = ("big_fanout", "steady_mix", "reads", "regeneration")


def run(base: Settings, followers: int, users: int, rate: float, seconds: float, concurrency: int,
        requests: int, out_dir: Path, command: str, scenarios: Sequence[str] = SCENARIOS) -> PipelineReport:
    out_dir.mkdir(parents=True, exist_ok=True)
    log_dir = out_dir / "logs"
    report = PipelineReport(command=command, machine={**machine(), "kafka": base.stack.kafka_version,
                                              "cassandra": base.stack.cassandra_version})
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
        pipeline_plot(report, out_dir / "pipeline-reads.png")
    console.print(pipeline_markdown(report))
    console.print(f"written to {out_dir}")
    return report
