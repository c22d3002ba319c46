"""`fanout bench abuse`: normal users post and read while one user abuses the APIs, against the same run
without the abuser.

The abuser follows FANOUT_MAX_FOLLOWING accounts (the cap: the follow graph is imported with them), has
not read their feed for 10 days (so their first read rebuilds an inbox from every followee), and, during
the abuse phase: toggles follows through the ingest API as fast as it answers (rate limits and the cap
answer 429 and 403), tries to follow new accounts beyond the cap, reads their own feed in a loop, and
opens `streams` live streams that it never reads (the per-user stream cap answers 429 beyond it). Normal
users meanwhile post at `rate` (through Kafka and the real worker) and read their feeds with `concurrency`
HTTP clients.

Reported per phase (baseline, then abuse, on the same processes): the normal users' read p99 (client side)
and fan-out lag p99 (the worker's end-to-end lag histogram: a post's time to its last inbox write), the
abuse/baseline ratios of both, the read service's RSS before, during and after the abuse, and what the
abuser's requests were answered.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import httpx

from bench.report import figure, save
from bench.scenario import console, publish_at_rate, scenario_settings
from bench.stats import highest_bucket, histogram_quantile, machine, percentile
from bench.strategies import load_graph
from bench.workload import Graph
from deploy.processes import ProcessGroup
from fanout.auth import Tokens
from fanout.lag import wait_until_drained
from fanout.producer import EventProducer
from fanout.settings import Settings

ABUSER = 50_000_001
FILLER = 60_000_001  # accounts the abuser follows besides the normal authors (they never post)
LAG = "fanout_end_to_end_lag_seconds"
HANDLING = "fanout_event_handling_seconds"


class Workload:
    def __init__(self, readers: int, authors: int, follows_each: int, abuser_follows: int, seed: int) -> None:
        rng = random.Random(seed)
        self.readers = list(range(1, readers + 1))
        self.authors = list(range(100_001, 100_001 + authors))
        followers: dict[int, set[int]] = {a: set() for a in self.authors}
        for r in self.readers:
            for a in rng.sample(self.authors, follows_each):
                followers[a].add(r)
        for a in [*self.authors, *range(FILLER, FILLER + abuser_follows - authors)]:
            followers.setdefault(a, set()).add(ABUSER)
        self.graph = Graph(sorted({u for fs in followers.values() for u in fs} | set(followers)), followers)
        self.inactive = {ABUSER}  # last read 10 days ago: the first read rebuilds from every followee


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def handling_by_type(scraped: dict[str, float]) -> dict[str, dict[str, float]]:
    """The worker's event handling histogram, one per event type, each keyed as `histogram_quantile` reads."""
    by_type: dict[str, dict[str, float]] = defaultdict(dict)
    for key, value in scraped.items():
        if key.startswith(HANDLING + "_bucket{"):
            labels = dict(part.split("=", 1) for part in key[len(HANDLING) + 8:-1].split(","))
            by_type[labels["type"].strip('"')][f'{HANDLING}_bucket{{le={labels["le"]}}}'] = value
    return by_type


def handling_times(after: dict[str, float], before: dict[str, float]) -> dict[str, dict[str, float]]:
    """Per event type handled between two scrapes: how many, their p99 and the slowest (to a bucket), in ms."""
    now, then = handling_by_type(after), handling_by_type(before)
    times = {}
    for kind, samples in sorted(now.items()):
        count = samples.get(f'{HANDLING}_bucket{{le="+Inf"}}', 0) - then[kind].get(f'{HANDLING}_bucket{{le="+Inf"}}', 0)
        if count > 0:
            times[kind] = {"events": int(count),
                           "p99_ms": round(histogram_quantile(samples, then[kind], HANDLING, 0.99) * 1000, 1),
                           "max_ms_at_most": round(highest_bucket(samples, then[kind], HANDLING) * 1000, 1)}
    return times


def lag_samples(scraped: dict[str, float]) -> dict[str, float]:
    """The end-to-end lag histogram summed over its `followers` label, as one histogram."""
    merged: dict[str, float] = defaultdict(float)
    for key, value in scraped.items():
        if key.startswith(LAG + "_bucket{"):
            le = key.split('le="', 1)[1].split('"', 1)[0]
            merged[f'{LAG}_bucket{{le="{le}"}}'] += value
    return dict(merged)


async def normal_reads(url: str, tokens: Tokens, readers: list[int], concurrency: int, stop: threading.Event,
                       latencies: list[float]) -> None:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as http:
        async def client(n: int) -> None:
            rng = random.Random(n)
            while not stop.is_set():
                reader = rng.choice(readers)
                started = time.perf_counter()
                (await http.get("/v1/feed", params={"limit": 20}, headers=tokens.headers(reader))).raise_for_status()
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(client(n) for n in range(concurrency)))


class Abuser:
    """The abusing user's requests, in threads, until stopped; counts every answer by request and status."""

    def __init__(self, s: Settings, processes: ProcessGroup, tokens: Tokens, streams: int, authors: list[int]) -> None:
        self.ingest, self.read = processes.url("ingest-api"), processes.url("read-api")
        self.headers = tokens.headers(ABUSER)
        self.streams, self.authors = streams, authors
        self.answers: Counter[str] = Counter()
        self.sockets: list[socket.socket] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._toggle, daemon=True),
                        threading.Thread(target=self._read, daemon=True)]

    def start(self) -> None:
        self._open_streams()
        for t in self.threads:
            t.start()

    def _open_streams(self) -> None:
        """Stream requests sent and never read: the server's answers (200 and a stream, or 429) pile up
        in the sockets' buffers."""
        host, port = self.read.removeprefix("http://").rsplit(":", 1)
        request = (f"GET /v1/feed/stream HTTP/1.1\r\nHost: {host}\r\nAuthorization: {self.headers['Authorization']}"
                   "\r\nAccept: text/event-stream\r\n\r\n").encode()
        for _ in range(self.streams):
            sock = socket.create_connection((host, int(port)))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(request)
            self.sockets.append(sock)

    def _toggle(self) -> None:
        with httpx.Client(base_url=self.ingest, headers=self.headers, timeout=30) as http:
            n = 0
            while not self.stop.is_set():
                n += 1
                author = self.authors[n % len(self.authors)]
                if n % 3 == 0:  # a new account: beyond the cap
                    r = http.post("/v1/follows", json={"followee_id": FILLER - n})
                    self.answers[f"follow new {r.status_code}"] += 1
                elif n % 3 == 1:
                    r = http.delete("/v1/follows", params={"followee_id": author})
                    self.answers[f"unfollow {r.status_code}"] += 1
                else:
                    r = http.post("/v1/follows", json={"followee_id": author})
                    self.answers[f"follow {r.status_code}"] += 1

    def _read(self) -> None:
        with httpx.Client(base_url=self.read, headers=self.headers, timeout=30) as http:
            while not self.stop.is_set():
                r = http.get("/v1/feed", params={"limit": 20})
                self.answers[f"read {r.status_code}"] += 1

    def end(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)
        stream_answers = Counter[str]()
        for sock in self.sockets:
            sock.settimeout(0.5)
            try:
                status = sock.recv(64).split(b" ", 2)[1].decode()
            except (OSError, IndexError):
                status = "none"
            stream_answers[f"stream {status}"] += 1
            sock.close()
        self.answers.update(stream_answers)


def phase(s: Settings, processes: ProcessGroup, w: Workload, tokens: Tokens, rate: float, seconds: float,
          concurrency: int, abuser: Abuser | None, name: str) -> dict[str, Any]:
    producer = EventProducer(s)
    rng = random.Random(name)
    posts = [(rng.choice(w.authors), f"{name} post {n}") for n in range(int(rate * seconds))]
    read_api = processes.procs["read-api"].pid
    scraped_before = processes.scrape("worker")
    before = lag_samples(scraped_before)
    rss = {"before": rss_mb(read_api)}
    stop, latencies = threading.Event(), list[float]()
    reads = threading.Thread(target=lambda: asyncio.run(normal_reads(processes.url("read-api"), tokens, w.readers,
                                                                     concurrency, stop, latencies)), daemon=True)
    reads.start()
    if abuser is not None:
        abuser.start()
    publish_at_rate(producer, posts, rate, f"{name}: normal users posting and reading")
    producer.flush()
    rss["during"] = rss_mb(read_api)
    stop.set()
    reads.join(timeout=60)
    if abuser is not None:
        abuser.end()
    producer.close()
    wait_until_drained(s, timeout=600, on_lag=lambda _: processes.check_alive())
    time.sleep(3)  # the closed streams leave the read service
    rss["after"] = rss_mb(read_api)
    scraped_after = processes.scrape("worker")
    after = lag_samples(scraped_after)
    latencies.sort()
    return {
        "posts": len(posts), "normal_reads": len(latencies),
        "read_p50_ms": round(percentile(latencies, 0.5) * 1000, 1),
        "read_p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
        "fanout_lag_p50_ms": round(histogram_quantile(after, before, LAG, 0.5) * 1000, 1),
        "fanout_lag_p99_ms": round(histogram_quantile(after, before, LAG, 0.99) * 1000, 1),
        "read_api_rss_mb": rss,
        "worker_event_handling": handling_times(scraped_after, scraped_before),
        "abuser_answers": dict(sorted(abuser.answers.items())) if abuser else {},
    }


def bench(base: Settings, readers: int, authors: int, rate: float, seconds: float, concurrency: int, streams: int,
          out: Path, command: str) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    w = Workload(readers, authors, 5, base.max_following, seed=17)
    s = scenario_settings(base, "abuse", rate_limit_reads=base.rate_limit_reads)  # every limit as deployed
    console.log(f"importing the graph: {readers} readers, {authors} authors, an abuser following "
                f"{base.max_following}")
    load_graph(s, w, time.time_ns() // 1_000_000, out / "graphs")
    report: dict[str, Any] = {"command": command, "machine": machine(), "readers": readers, "authors": authors,
                              "rate": rate, "seconds": seconds, "concurrency": concurrency, "streams": streams,
                              "abuser_follows": base.max_following}
    tokens = Tokens(s)
    with ProcessGroup(s, out / "logs").start("worker", "read-api", "ingest-api") as processes:
        report["baseline"] = phase(s, processes, w, tokens, rate, seconds, concurrency, None, "baseline")
        abuser = Abuser(s, processes, tokens, streams, w.authors)
        report["abuse"] = phase(s, processes, w, tokens, rate, seconds, concurrency, abuser, "abuse")
        rebuilds = processes.scrape("worker").get('fanout_regenerations_total{phase="finished"}', 0.0)
    base_, abuse = report["baseline"], report["abuse"]
    report["ratios"] = {
        "read_p99": round(abuse["read_p99_ms"] / base_["read_p99_ms"], 2),
        "fanout_lag_p99": round(abuse["fanout_lag_p99_ms"] / base_["fanout_lag_p99_ms"], 2),
    }
    report["target_within_2x"] = all(r <= 2 for r in report["ratios"].values())
    report["abuser_inbox_rebuilds_finished"] = int(rebuilds)
    (out / "abuse.json").write_text(json.dumps(report, indent=2))
    fig, ax = figure(7, 4)
    labels = ["read p99", "fan-out lag p99"]
    xs = range(len(labels))
    ax.bar([x - 0.2 for x in xs], [base_["read_p99_ms"], base_["fanout_lag_p99_ms"]], 0.4, label="baseline")
    ax.bar([x + 0.2 for x in xs], [abuse["read_p99_ms"], abuse["fanout_lag_p99_ms"]], 0.4, label="with the abuser")
    ax.set_xticks(list(xs), labels)
    ax.set_ylabel("ms")
    ax.set_title(f"Normal users beside one abuser ({streams} unread streams, follow toggling)")
    ax.legend()
    save(fig, out / "abuse.png")
    return report
