"""The write path's own figures in `fanout bench` (issue 10), beside the bare driver loops of the same run:
one big fan-out, follows per second through Kafka and one worker, and the bulk graph import.

  follows      follow events published to Kafka first, then consumed by one fresh worker: follows/s from
               its first to its last processed follow (the worker's counter, scraped every 50 ms), in two
               orders: a live stream (authors interleaved at random) and a graph loaded through Kafka
               (each author's follows one after another).
  import       `fanout import follows FILE` on a power-law graph (1,000,000 edges by default), as its own
               process: edges/s, and the CPU of the importer, Cassandra and Kafka.
  big fan-out  bench/pipeline.py big_fanout: one post to N followers, from Kafka's ack to the last row.

Every figure comes with CPU seconds per 1,000 deliveries (inbox rows, follows or edges) of each process.
"""

from __future__ import annotations

import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.pipeline import big_fanout
from bench.scenario import console, publish, scenario_settings, server_pids
from bench.stats import CpuMeter, per_1000
from bench.workload import power_law_graph
from deploy.processes import ProcessGroup
from fanout.adapters.author_cache import AuthorStatsCache
from fanout.bootstrap import open_resources
from fanout.core.events import Event, Followed
from fanout.lag import wait_until_drained
from fanout.settings import Settings
from fanout.write.producer import EventProducer

FOLLOWED = 'fanout_events_consumed_total{type="Followed"}'
LAST_BATCH = "fanout_last_batch_timestamp_seconds"
FINISHED_POLL_SECONDS = 0.25


def edges_of(n_edges: int, seed: int) -> list[tuple[int, int]]:
    """(follower, followee) pairs of a power-law graph, exactly `n_edges` of them (the graph is sized for it)."""
    users = max(100, n_edges // 8)
    graph = power_law_graph(users, seed=seed, min_followers=2)
    edges = [(f, a) for a, fs in graph.followers.items() for f in sorted(fs)]
    while len(edges) < n_edges:  # a few more users until there are enough
        users = users * 3 // 2
        graph = power_law_graph(users, seed=seed, min_followers=2)
        edges = [(f, a) for a, fs in graph.followers.items() for f in sorted(fs)]
    return edges[:n_edges]


def follows_per_second(base: Settings, n_follows: int, order: str, log_dir: Path) -> dict[str, Any]:
    """Follows/s of one worker on events already waiting in Kafka (`order`: "live" or "by_author")."""
    s = scenario_settings(base, f"follows-{order.replace('_', '')}")
    edges = edges_of(n_follows, seed=5)
    if order == "live":
        random.Random(5).shuffle(edges)
    start = int(time.time() * 1000) - 3_600_000
    events: list[Event] = [Followed(event_time=start + i, follower_id=f, followee_id=a)
                           for i, (f, a) in enumerate(edges)]
    producer = EventProducer(s)
    for i in range(0, len(events), 20_000):
        publish(producer, events[i : i + 20_000])
    producer.close()
    with ProcessGroup(s, log_dir / f"follows-{order}").start("worker") as processes:
        cpu = CpuMeter({"worker": processes.procs["worker"].pid, **server_pids(base)})
        # From the first scrape that finds follows processed (polled often until then, while the worker
        # starts) to the end of the worker's last batch, which its own gauge tells after the fact: polling
        # its metrics every 50 ms to the end had cost the worker ~6% of its CPU (py-spy), as it had in the
        # bursts (bench/strategies.py).
        first: tuple[float, float] | None = None
        idle_at = time.time()  # the last scrape that found none processed yet
        done = 0.0
        deadline = time.monotonic() + 1800
        while done < len(events) and time.monotonic() < deadline:
            processes.check_alive()
            now, done = time.time(), processes.metric(FOLLOWED)
            if first is None and done > 0:
                first = (now, done) if done < len(events) else (idle_at, 0.0)
            elif first is None:
                idle_at = now
            time.sleep(0.05 if first is None else FINISHED_POLL_SECONDS)
        last = processes.metric(f'{LAST_BATCH}{{source="{s.events_topic}"}}')
        spent = cpu.spent()
        wait_until_drained(s, timeout=60)
    if first is None or done < len(events):
        raise TimeoutError(f"the worker processed {done:.0f} of {len(events)} follows")
    started, before = first  # the follows after the first scrape that found some; all if it found all of them
    counted, seconds = len(events) - before, max(last - started, 1e-3)
    return {"order": order, "follows": len(events), "authors": len({a for _, a in edges}),
            "seconds": round(seconds, 2), "follows_per_s": round(counted / seconds),
            "cpu_s": spent, "cpu_s_per_1000_follows": per_1000(spent, len(events))}


def follows_rounds(base: Settings, n_follows: int, order: str, rounds: int, log_dir: Path) -> dict[str, Any]:
    """`follows_per_second` several times (each on a keyspace and a worker of its own): a round on this
    2-core machine varies by a fifth, so one round cannot tell a change from noise; the medians can."""
    results = []
    for i in range(rounds):
        r = follows_per_second(base, n_follows, order, log_dir / f"round-{i + 1}")
        console.print(f"round {i + 1}/{rounds}: {r['follows_per_s']:,} follows/s, worker "
                      f"{r['cpu_s_per_1000_follows']['worker']} CPU s per 1,000")
        results.append(r)
    return {"order": order, "follows": n_follows, "rounds": [r["follows_per_s"] for r in results],
            "median_follows_per_s": round(statistics.median(r["follows_per_s"] for r in results)),
            "median_worker_cpu_s_per_1000": round(statistics.median(
                r["cpu_s_per_1000_follows"]["worker"] for r in results), 3)}


def graph_import(base: Settings, n_edges: int, work_dir: Path) -> dict[str, Any]:
    """`fanout import follows` of `n_edges` edges into a fresh keyspace, as its own process."""
    s = scenario_settings(base, "import")
    edges = edges_of(n_edges, seed=9)
    path = work_dir / f"follows-{n_edges}.csv"
    work_dir.mkdir(parents=True, exist_ok=True)
    path.write_text("follower_id,followee_id\n" + "".join(f"{f},{a}\n" for f, a in edges))
    cpu = CpuMeter(server_pids(base))
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "services.cli", "import", "follows", str(path)], check=True,
                   env={**__import__("os").environ, **s.to_env()}, timeout=3600)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    spent = {"importer": round(after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime, 2),
             **cpu.spent()}
    return {"edges": len(edges), "authors": len({a for _, a in edges}), "seconds": round(seconds, 2),
            "edges_per_s": round(len(edges) / seconds), "counts_checked": check_counts(s, edges),
            "cpu_s": spent, "cpu_s_per_1000_edges": per_1000(spent, len(edges))}


def check_counts(s: Settings, edges: list[tuple[int, int]], sample: int = 200) -> int:
    """The follower counts of a sample of authors are the graph's (the import really wrote the graph)."""
    import asyncio

    counts: dict[int, int] = {}
    for _, a in edges:
        counts[a] = counts.get(a, 0) + 1
    authors = random.Random(1).sample(sorted(counts), min(sample, len(counts)))
    res = open_resources(s, storage=True)
    try:
        graph = AuthorStatsCache(res.stores.graph)

        async def read() -> list[int]:
            return [(await graph.author_stats(a)).follower_count for a in authors]

        stored = asyncio.run(read())
    finally:
        res.close()
    wrong = {a: (c, counts[a]) for a, c in zip(authors, stored, strict=True) if c != counts[a]}
    if wrong:
        raise AssertionError(f"imported follower counts differ from the graph's: {dict(list(wrong.items())[:5])}")
    return len(authors)


def run(base: Settings, out: Path, big_followers: int, n_follows: int, import_edges: int) -> dict[str, Any]:
    """Every write-path figure; `out/logs` gets the processes' logs."""
    result: dict[str, Any] = {}
    console.rule("write path: one big fan-out")
    result["big_fanout"] = big_fanout(base, big_followers, out / "logs")
    console.print(result["big_fanout"])
    for order in ("live", "by_author"):
        console.rule(f"write path: follows through Kafka and one worker ({order})")
        result[f"follows_{order}"] = follows_per_second(base, n_follows, order, out / "logs")
        console.print(result[f"follows_{order}"])
    console.rule(f"write path: graph import of {import_edges:,} edges")
    result["import"] = graph_import(base, import_edges, out / "work")
    console.print(result["import"])
    return result
