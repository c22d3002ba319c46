"""`fanout bench reads`: feed reads through the real read service, judged by outside load generators (wrk
for the peak, vegeta for fixed rates), for the hybrid and the pull-only baseline, beside the bare
cassandra-driver inbox-page loop measured on the same Cassandra in the same run.

The workload: a power-law graph of normal authors, a few hundred celebrities, and groups of readers who
follow 0, 5, 20 or 250 celebrities (plus 20 normal authors each), readers who follow 200 normal authors
(where pull-only must merge 200 timelines and the hybrid reads one inbox), and returning readers (back
after ten days: their first read is a pull while the worker rebuilds their inbox). The graph is loaded
as the follow handler would leave it; the posts go through Kafka and the real worker.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import loadgen
from bench.reads_report import markdown, plot
from bench.scenario import console, publish, scenario_settings, server_pids
from bench.stats import highest_bucket, machine
from bench.strategies import cpu_seconds, load_graph
from bench.workload import Graph, power_law_graph
from deploy.processes import ProcessGroup
from fanout.api.auth import Tokens
from fanout.lag import wait_until_drained
from fanout.settings import Settings
from fanout.write.producer import EventProducer

DAY_MS = 86_400_000
STEADY = ("0 celebrities", "5 celebrities", "20 celebrities", "250 celebrities", "200 normal authors")


@dataclass
class ReadWorkload:
    graph: Graph
    inactive: set[int]  # the returning readers: last read ten days ago
    groups: dict[str, list[int]]  # readers by what they follow
    post_authors: list[int]


def build(users: int, readers_per_group: int, celebrities: int, threshold: int, seed: int) -> ReadWorkload:
    rng = random.Random(seed)
    graph = power_law_graph(users, seed=seed)
    normal = [u for u in graph.users if graph.follower_count(u) < threshold]
    celebs = list(range(users + 1, users + 1 + celebrities))
    for c in celebs:
        graph.followers[c] = set(rng.sample(graph.users, threshold + 5))
    next_id = users + celebrities + 1
    groups: dict[str, list[int]] = {}
    for name, n_celebs, n_normal in [("0 celebrities", 0, 20), ("5 celebrities", 5, 20), ("20 celebrities", 20, 20),
                                     ("250 celebrities", 250, 20), ("200 normal authors", 0, 200),
                                     ("returning", 5, 20)]:
        groups[name] = list(range(next_id, next_id + readers_per_group))
        next_id += readers_per_group
        for reader in groups[name]:
            for author in rng.sample(celebs, min(n_celebs, len(celebs))) + rng.sample(normal, n_normal):
                graph.followers.setdefault(author, set()).add(reader)
    graph.users = sorted(set(graph.users) | {r for g in groups.values() for r in g} | set(celebs))
    followed = sorted({a for a, fs in graph.followers.items() if fs & set().union(*groups.values())})
    post_authors = [a for a in followed for _ in range(3)]  # every author a reader follows posts 3 times
    rng.shuffle(post_authors)
    return ReadWorkload(graph, set(groups["returning"]), groups, post_authors)


def targets(url: str, readers: list[int], tokens: Tokens, limit: int = 20) -> list[loadgen.Target]:
    """Each reader's own feed, with their bearer token."""
    return [(f"{url}/v1/feed?limit={limit}", tokens.headers(r)) for r in readers]


def bare_reads(settings: Settings, reads: int) -> dict[str, Any]:
    """The bare driver's inbox-page loop (bench/driver.py), 16 and 64 requests in flight."""
    from cassandra.cluster import EXEC_PROFILE_DEFAULT

    from bench.driver import connect, drop_keyspace, read_loop

    s = scenario_settings(settings, "reads-bare")
    cluster, session = connect(s, 4)
    try:
        return {f"window_{w}": read_loop(session, s.keyspace, reads, w, s.inbox_ttl_seconds, EXEC_PROFILE_DEFAULT)
                for w in (16, 64)}
    finally:
        drop_keyspace(session, s.keyspace)
        cluster.shutdown()


def run_strategy(base: Settings, strategy: str, workers: int, w: ReadWorkload, rates: list[float], seconds: float,
                 connections: int, log_dir: Path, vegeta: str) -> dict[str, Any]:
    s = scenario_settings(base, f"reads-{strategy}{workers}", strategy=strategy, read_workers=workers)
    now = time.time_ns() // 1_000_000
    load_graph(s, w, now, log_dir / "graphs")
    result: dict[str, Any] = {"strategy": strategy, "read_workers": workers}
    with ProcessGroup(s, log_dir / f"{strategy}-{workers}").start("worker", "read-api") as processes:
        producer = EventProducer(s)
        try:
            publish(producer, [producer.new_post(a, f"post by {a}") for a in w.post_authors])
        finally:
            producer.close()
        wait_until_drained(s, timeout=900, on_lag=lambda _: processes.check_alive())
        url = processes.url("read-api")
        tokens = Tokens(s)
        steady = [r for g in STEADY for r in w.groups[g]]
        console.log(f"{strategy}, {workers} read process(es): returning readers' first reads, then warming up")
        # First reads of returning readers: a pull over their followees while the worker rebuilds.
        result["returning_first_read"] = loadgen.vegeta(vegeta, targets(url, w.groups["returning"], tokens), 20,
                                                        max(1.0, len(w.groups["returning"]) / 20))
        loadgen.vegeta(vegeta, targets(url, steady, tokens), 200, max(2.0, len(steady) / 200))
        pids = [processes.procs["read-api"].pid, *_children(processes.procs["read-api"].pid)]
        cassandra = server_pids(s)["cassandra"]  # every node of a cluster's, counted together
        cpu_before = {"read-api": sum(cpu_seconds(p) for p in pids), "cassandra": cpu_seconds(cassandra)}
        requests_before = processes.scrape("read-api")
        console.log(f"{strategy}: wrk, {connections} connections, {seconds:.0f}s")
        result["peak"] = loadgen.wrk(targets(url, steady, tokens), connections, seconds)
        result["cpu_ms_per_1000_reads"] = _cpu_per_read(pids, cassandra, cpu_before, result["peak"], seconds)
        after = processes.scrape("read-api")
        result["cassandra_requests_per_read"] = _requests_per_read(after, requests_before)
        result["reader_page_hit_ratio"] = _hit_ratio(after, requests_before, "fanout_reader_page_cache_lookups_total")
        result["gc_during_peak"] = _gc(after, requests_before)
        result["fixed_rate"] = []
        for rate in rates:
            console.log(f"{strategy}: vegeta at {rate:.0f} reads/s for {seconds:.0f}s")
            result["fixed_rate"].append(loadgen.vegeta(vegeta, _shuffled(targets(url, steady, tokens)), rate, seconds))
        result["by_group"] = {}
        for group in STEADY:  # below saturation, each group on its own
            result["by_group"][group] = loadgen.vegeta(vegeta, _shuffled(targets(url, w.groups[group], tokens)),
                                                       min(rates), seconds / 2)
    return result


def bench(base: Settings, users: int, readers_per_group: int, celebrities: int, threshold: int,
          strategies: list[str], workers: list[int], rates: list[float], seconds: float, connections: int,
          driver_reads: int, out: Path, command: str, seed: int = 7) -> dict[str, Any]:
    vegeta = loadgen.vegeta_binary(base)
    loadgen.wrk_binary()
    out.mkdir(parents=True, exist_ok=True)
    w = build(users, readers_per_group, celebrities, threshold, seed)
    report: dict[str, Any] = {"command": command, "machine": machine(), "users": len(w.graph.users),
                              "edges": sum(len(f) for f in w.graph.followers.values()), "posts": len(w.post_authors),
                              "readers_per_group": readers_per_group, "celebrities": celebrities, "runs": []}
    console.rule("bare driver: inbox pages")
    base = dataclasses.replace(base, celebrity_threshold=threshold)
    report["bare_driver"] = bare_reads(base, driver_reads)
    for strategy in strategies:
        for n in workers if strategy == "hybrid" else workers[:1]:
            console.rule(f"{strategy}, {n} read process(es)")
            report["runs"].append(run_strategy(base, strategy, n, w, rates, seconds, connections, out / "logs",
                                               vegeta))
    (out / "reads.json").write_text(json.dumps(report, indent=2))
    (out / "reads.md").write_text(markdown(report))
    plot(report, out)
    return report


def _shuffled(items: list[loadgen.Target]) -> list[loadgen.Target]:
    items = list(items)
    random.Random(3).shuffle(items)
    return items


def _children(pid: int) -> list[int]:
    """Direct children of a process (uvicorn's worker processes)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _cpu_per_read(pids: list[int], cassandra: tuple[int, ...], before: dict[str, float], peak: dict[str, Any],
                  seconds: float) -> dict[str, float]:
    reads = max(1, peak["reads_per_s"] * seconds)
    after = {"read-api": sum(cpu_seconds(p) for p in pids), "cassandra": cpu_seconds(cassandra)}
    return {name: round((after[name] - before[name]) * 1e6 / reads, 1) for name in after}


def _gc(after: dict[str, float], before: dict[str, float]) -> dict[str, Any]:
    """Garbage collections of the read service during the peak run, by generation: how many, their total,
    and the bucket of the longest."""
    def total(suffix: str, generation: str) -> float:
        key = f'fanout_gc_pause_seconds{suffix}{{generation="{generation}"}}'
        return sum(v - before.get(k, 0.0) for k, v in after.items() if k == key)

    def longest(generation: str) -> float:
        mine = {k: v for k, v in after.items() if f'generation="{generation}"' in k}
        return highest_bucket(mine, before, "fanout_gc_pause_seconds") * 1000

    return {g: {"collections": total("_count", g), "total_ms": round(total("_sum", g) * 1000, 1),
                "longest_ms_at_most": longest(g)} for g in ("0", "1", "2")}


def _hit_ratio(after: dict[str, float], before: dict[str, float], counter: str) -> float | None:
    """Hits over lookups of a cache's counter between two scrapes."""
    hits, misses = (after.get(f'{counter}{{result="{r}"}}', 0) - before.get(f'{counter}{{result="{r}"}}', 0)
                    for r in ("hit", "miss"))
    return round(hits / (hits + misses), 3) if hits + misses else None


def _requests_per_read(after: dict[str, float], before: dict[str, float]) -> float | None:
    count = after.get("fanout_read_cassandra_requests_count", 0) - before.get("fanout_read_cassandra_requests_count", 0)
    total = after.get("fanout_read_cassandra_requests_sum", 0) - before.get("fanout_read_cassandra_requests_sum", 0)
    return round(total / count, 3) if count else None
