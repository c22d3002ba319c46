"""`fanout bench abuse`: normal users post and read while one user abuses the APIs, against the same run
without the abuser.

The abuser follows FANOUT_MAX_FOLLOWING accounts (the cap: the follow graph is imported with them), has
not read their feed for 10 days (so their first read rebuilds an inbox from every followee), and, during
an abuse phase: opens `streams` live streams that it never reads (the per-user stream cap answers 429
beyond it), toggles follows through the ingest API, tries to follow new accounts beyond the cap (403) and
reads their own feed in a loop. A paced abuser does so as fast as the API lets it (each 429's Retry-After
waited out); a flooding one as fast as it is answered (429s ignored). Normal users meanwhile post at
`rate` (through Kafka and the real worker) and read their feeds with `concurrency` HTTP clients. The
abuser is a process of its own, as another client would be.

`rounds` times, a baseline phase, a paced and a flooding abuse phase, on the same processes. Reported per
phase: the normal users' read p99 (client side) and fan-out lag p99 (the worker's end-to-end lag
histogram: a post's time to its last inbox write), how long each kind of event held the worker's batch, the
read service's RSS before, during and after, and what the abuser's requests were answered; per round the
abuse/baseline ratios, and the median round's ratios against the 2x target (which is about the paced
abuser: what the API lets one user do).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import random
import socket
import statistics
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from bench.charts import figure, save
from bench.scenario import console, publish_at_rate, scenario_settings
from bench.stats import highest_bucket, histogram_quantile, histograms_by, machine, percentile
from bench.strategies import load_graph
from bench.workload import Graph
from deploy.processes import ProcessGroup
from fanout.api.auth import Tokens
from fanout.lag import wait_until_drained
from fanout.settings import Settings
from fanout.write.producer import EventProducer

ABUSER = 50_000_001
FILLER = 60_000_001  # accounts the abuser follows besides the normal authors (they never post)
LAG = "fanout_end_to_end_lag_seconds"
HANDLING = "fanout_event_handling_seconds"
MODES = ("paced", "flood")  # the abuser waits out each 429's Retry-After, or ignores it


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


def handling_times(after: dict[str, float], before: dict[str, float]) -> dict[str, dict[str, float]]:
    """Per event type handled between two scrapes: how many, their p99 and the slowest (to a bucket), in ms."""
    now, then = histograms_by(after, HANDLING, "type"), histograms_by(before, HANDLING, "type")
    times = {}
    for kind, samples in sorted(now.items()):
        earlier = then.get(kind, {})  # a type first handled in this phase
        count = samples.get(f'{HANDLING}_bucket{{le="+Inf"}}', 0) - earlier.get(f'{HANDLING}_bucket{{le="+Inf"}}', 0)
        if count > 0:
            times[kind] = {"events": int(count),
                           "p99_ms": round(histogram_quantile(samples, earlier, HANDLING, 0.99) * 1000, 1),
                           "max_ms_at_most": round(highest_bucket(samples, earlier, HANDLING) * 1000, 1)}
    return times


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
    """The abusing user: a process of its own (as a real abuser is another client: in the normal users'
    process, its threads would hold their GIL and inflate the latencies they measure). Counts every answer
    by request and status."""

    def __init__(self, processes: ProcessGroup, tokens: Tokens, streams: int, authors: list[int], paced: bool) -> None:
        self.args = (processes.url("ingest-api"), processes.url("read-api"), tokens.headers(ABUSER), streams,
                     authors, paced)
        self.answers: Counter[str] = Counter()
        context = multiprocessing.get_context("spawn")
        self.stop, self.results = context.Event(), context.Queue()
        self.process = context.Process(target=abuse, args=(*self.args, self.stop, self.results), daemon=True)

    def start(self) -> None:
        self.process.start()

    def end(self) -> None:
        self.stop.set()
        self.answers.update(self.results.get(timeout=180))
        self.process.join(timeout=60)


def abuse(ingest: str, read: str, headers: dict[str, str], streams: int, authors: list[int], paced: bool, stop: Any,
          results: Any) -> None:
    """The abuser's process: `streams` stream requests never read, then follow toggling and feed reads until
    `stop`, as fast as the API lets them (`paced`: a 429's Retry-After is waited out) or as fast as they
    are answered (a flood); then every answer's count into `results`."""
    answers: Counter[str] = Counter()
    sockets = _open_streams(read, headers, streams)
    threads = [threading.Thread(target=_toggle, args=(ingest, headers, authors, paced, stop, answers), daemon=True),
               threading.Thread(target=_read, args=(read, headers, paced, stop, answers), daemon=True)]
    for t in threads:
        t.start()
    stop.wait()
    for t in threads:
        t.join(timeout=60)
    for sock in sockets:
        sock.settimeout(0.5)
        try:
            status = sock.recv(64).split(b" ", 2)[1].decode()
        except (OSError, IndexError):
            status = "none"
        answers[f"stream {status}"] += 1
        sock.close()
    results.put(dict(answers))


def _open_streams(read: str, headers: dict[str, str], streams: int) -> list[socket.socket]:
    """Stream requests sent and never read: the server's answers (200 and a stream, or 429) pile up in the
    sockets' buffers."""
    host, port = read.removeprefix("http://").rsplit(":", 1)
    request = (f"GET /v1/feed/stream HTTP/1.1\r\nHost: {host}\r\nAuthorization: {headers['Authorization']}"
               "\r\nAccept: text/event-stream\r\n\r\n").encode()
    sockets = []
    for _ in range(streams):
        sock = socket.create_connection((host, int(port)))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(request)
        sockets.append(sock)
    return sockets


def _answered(r: httpx.Response, request: str, paced: bool, stop: Any, answers: Counter[str]) -> None:
    answers[f"{request} {r.status_code}"] += 1
    if paced and r.status_code == 429:
        stop.wait(float(r.headers.get("Retry-After", "1")))


def _toggle(ingest: str, headers: dict[str, str], authors: list[int], paced: bool, stop: Any,
            answers: Counter[str]) -> None:
    with httpx.Client(base_url=ingest, headers=headers, timeout=30) as http:
        n = 0
        while not stop.is_set():
            n += 1
            author = authors[n % len(authors)]
            if n % 3 == 0:  # a new account: beyond the cap
                _answered(http.post("/v1/follows", json={"followee_id": FILLER - n}), "follow new", paced, stop,
                          answers)
            elif n % 3 == 1:
                _answered(http.delete("/v1/follows", params={"followee_id": author}), "unfollow", paced, stop, answers)
            else:
                _answered(http.post("/v1/follows", json={"followee_id": author}), "follow", paced, stop, answers)


def _read(read: str, headers: dict[str, str], paced: bool, stop: Any, answers: Counter[str]) -> None:
    with httpx.Client(base_url=read, headers=headers, timeout=30) as http:
        while not stop.is_set():
            _answered(http.get("/v1/feed", params={"limit": 20}), "read", paced, stop, answers)


def phase(s: Settings, processes: ProcessGroup, w: Workload, tokens: Tokens, rate: float, seconds: float,
          concurrency: int, abuser: Abuser | None, name: str) -> dict[str, Any]:
    producer = EventProducer(s)
    rng = random.Random(name)
    posts = [(rng.choice(w.authors), f"{name} post {n}") for n in range(int(rate * seconds))]
    read_api = processes.procs["read-api"].pid
    scraped_before = processes.scrape("worker")
    before = histograms_by(scraped_before, LAG, None).get("", {})
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
    after = histograms_by(scraped_after, LAG, None).get("", {})
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
          rounds: int, out: Path, command: str) -> dict[str, Any]:
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
    report["rounds"] = []
    with ProcessGroup(s, out / "logs").start("worker", "read-api", "ingest-api") as processes:
        for n in range(1, rounds + 1):
            one = {"baseline": phase(s, processes, w, tokens, rate, seconds, concurrency, None, f"baseline {n}")}
            for mode in MODES:
                abuser = Abuser(processes, tokens, streams, w.authors, paced=mode == "paced")
                one[mode] = phase(s, processes, w, tokens, rate, seconds, concurrency, abuser, f"{mode} {n}")
            one["ratios"] = {mode: {
                "read_p99": round(one[mode]["read_p99_ms"] / one["baseline"]["read_p99_ms"], 2),
                "fanout_lag_p99": round(one[mode]["fanout_lag_p99_ms"] / one["baseline"]["fanout_lag_p99_ms"], 2),
            } for mode in MODES}
            report["rounds"].append(one)
        rebuilds = processes.scrape("worker").get('fanout_regenerations_total{phase="finished"}', 0.0)
    # The median round: one noisy phase on a shared machine moves a p99 by more than the abuser does.
    report["ratios"] = {mode: {key: statistics.median(r["ratios"][mode][key] for r in report["rounds"])
                               for key in ("read_p99", "fanout_lag_p99")} for mode in MODES}
    # The target is about what the API lets one user do: the paced abuser. A flood (429s ignored) costs
    # the shared machine's CPU whatever the answer; in production an edge proxy's connection limits take it.
    report["target_within_2x"] = all(r <= 2 for r in report["ratios"]["paced"].values())
    report["abuser_inbox_rebuilds_finished"] = int(rebuilds)
    (out / "abuse.json").write_text(json.dumps(report, indent=2))
    fig, axes = figure(10, 4, ncols=2)
    for ax, (label, key) in zip(axes, (("read p99", "read_p99_ms"), ("fan-out lag p99", "fanout_lag_p99_ms")),
                                strict=True):
        xs = range(1, rounds + 1)
        for offset, (mode, name) in zip((-0.27, 0, 0.27), (("baseline", "baseline"), ("paced", "paced abuser"),
                                                          ("flood", "flooding abuser")), strict=True):
            ax.bar([x + offset for x in xs], [r[mode][key] for r in report["rounds"]], 0.27, label=name)
        ax.set_xticks(list(xs), [f"round {x}" for x in xs])
        ax.set_ylabel("ms")
        ax.set_title(f"normal users' {label}")
        ax.legend()
    fig.suptitle(f"Normal users beside one abuser ({streams} unread streams, follow toggling)")
    save(fig, out / "abuse.png")
    return report
