"""`fanout bench stream`: many readers connected to the live feed while posts arrive at a nominal rate.

Every reader follows a few normal authors and a celebrity; posts are published through Kafka and the real
worker; each reader's stream is read by an asyncio client in this process. Reported: the time from a
post's acceptance (its id's millisecond) to its arrival on each connected follower's stream, p50/p99 over
every delivery, deliveries missing or extra against an oracle of who follows whom, and the read
service's CPU per 1,000 streamed items.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.charts import figure, save
from bench.scenario import console, publish_at_rate, scenario_settings
from bench.stats import machine, percentile
from bench.strategies import cpu_seconds, load_graph
from bench.workload import Graph
from deploy.processes import ProcessGroup
from fanout.api.auth import Tokens
from fanout.lag import wait_until_drained
from fanout.settings import Settings
from fanout.write.producer import EventProducer


class Workload:
    def __init__(self, readers: int, authors: int, celebrities: int, follows_each: int, threshold: int,
                 seed: int) -> None:
        rng = random.Random(seed)
        self.readers = list(range(1, readers + 1))
        self.authors = list(range(100_001, 100_001 + authors))
        self.celebrities = list(range(200_001, 200_001 + celebrities))
        followers: dict[int, set[int]] = {a: set() for a in [*self.authors, *self.celebrities]}
        for r in self.readers:
            for a in rng.sample(self.authors, follows_each):
                followers[a].add(r)
            followers[rng.choice(self.celebrities)].add(r)
        extra = 1_000_000  # fans who never connect, so the celebrities are above the threshold
        for c in self.celebrities:
            while len(followers[c]) < threshold + 1:
                followers[c].add(extra)
                extra += 1
        self.graph = Graph(sorted({u for fs in followers.values() for u in fs} | set(followers)), followers)
        self.inactive: set[int] = set()
        self.posters = [*self.authors, *self.celebrities]


async def listen(url: str, reader: int, headers: dict[str, str], got: dict[int, list[tuple[int, float]]],
                 ready: asyncio.Event, connected: list[int]) -> None:
    async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=None)) as client, \
            client.stream("GET", f"{url}/v1/feed/stream", headers=headers) as response:
        event = ""
        async for line in response.aiter_lines():
            if line.startswith("retry:"):
                connected.append(reader)
                if len(connected) == len(got):
                    ready.set()
            elif line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "post":
                got[reader].append((orjson.loads(line[6:])["post_id"], time.time()))


async def run_streams(url: str, readers: list[int], tokens: Tokens,
                      publish: Any) -> dict[int, list[tuple[int, float]]]:
    got: dict[int, list[tuple[int, float]]] = {r: [] for r in readers}
    ready, connected = asyncio.Event(), list[int]()
    tasks = [asyncio.ensure_future(listen(url, r, tokens.headers(r), got, ready, connected)) for r in readers]
    await asyncio.wait_for(ready.wait(), 120)
    await asyncio.get_running_loop().run_in_executor(None, publish)
    await asyncio.sleep(3)  # the last deliveries
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return got


def bench(base: Settings, readers: int, authors: int, rate: float, seconds: float, out: Path,
          command: str) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    threshold = 50
    w = Workload(readers, authors, 5, 5, threshold, seed=11)
    s = scenario_settings(base, "stream", celebrity_threshold=threshold)
    load_graph(s, w, time.time_ns() // 1_000_000, out / "graphs")
    report: dict[str, Any] = {"command": command, "machine": machine(), "readers": readers, "rate": rate,
                              "seconds": seconds}
    with ProcessGroup(s, out / "logs").start("worker", "read-api") as processes:
        producer = EventProducer(s)
        posts = [(random.Random(n).choice(w.posters), f"post {n}") for n in range(int(rate * seconds))]
        read_api = processes.procs["read-api"].pid
        cpu_before = cpu_seconds(read_api)

        def publish() -> None:
            publish_at_rate(producer, posts, rate, f"{readers} readers connected")
            producer.flush()

        console.log(f"connecting {readers} readers")
        got = asyncio.run(run_streams(processes.url("read-api"), w.readers, Tokens(s), publish))
        cpu = cpu_seconds(read_api) - cpu_before
        producer.close()
        wait_until_drained(s, timeout=300)
    lags = sorted((t - ((pid >> 22) + 1_577_836_800_000) / 1000) * 1000 for items in got.values() for pid, t in items)
    following = w.graph.following()
    expected = sum(sum(1 for a, _ in posts if a in following.get(r, ())) for r in w.readers)
    received = sum(len(v) for v in got.values())
    duplicates = sum(len(v) - len({p for p, _ in v}) for v in got.values())
    report.update(posts=len(posts), expected_deliveries=expected, received=received, duplicates=duplicates,
                  p50_ms=round(percentile(lags, 0.5), 1) if lags else None,
                  p99_ms=round(percentile(lags, 0.99), 1) if lags else None,
                  max_ms=round(lags[-1], 1) if lags else None,
                  read_api_cpu_ms_per_1000_items=round(cpu * 1e6 / max(1, received), 1))
    (out / "stream.json").write_text(json.dumps(report, indent=2))
    fig, ax = figure()
    ax.hist(lags, bins=50)
    ax.set_xlabel("acceptance to arrival on the stream, ms")
    ax.set_ylabel("deliveries")
    ax.set_title(f"Live feed latency, {readers} connected readers, {rate:.0f} posts/s")
    save(fig, out / "stream_latency.png")
    return report
