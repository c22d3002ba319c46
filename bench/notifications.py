"""`fanout bench notifications`: notification delivery, quiet and while the worker is buried in bulk work, and
likes per second of one notifier with exact counts.

  quiet     likes at a steady rate on many posts for `seconds`; meanwhile probes: a like of a fresh post of a
            probe author, then its owner's GET /v1/notifications polled every 5 ms until the group is there
            (Kafka's ack of the like to the read API showing it). `probers` probes run side by side, each
            starting its next one half a second after its last ended, so a p99 rests on ~150 probes a run,
            not ~35 (one prober's p99 was its slowest probe).
  burst     the same while the worker takes a burst of posts and one post pushed to `followers` inboxes.
  flood     `flood` likes published at once over posts of 10 likes each, one of them with `hot` likes: likes/s
            of one notifier (from its first to its last processed like), the rows it wrote per like, and
            every post's like count checked exact against the likes sent.

Each latency is also taken by the notifier itself (fanout_notification_delivery_seconds: event time to the
group written, which is what the next GET returns).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from rich.progress import Progress

from bench.scenario import console, publish, scenario_settings, seed_follows
from bench.stats import histogram_quantile, machine, percentile
from deploy.processes import ProcessGroup
from fanout.api.auth import Tokens
from fanout.bootstrap import open_resources
from fanout.core.clock import wall_ms
from fanout.core.events import Event, Followed, Liked
from fanout.lag import LagMeter
from fanout.settings import Settings
from fanout.write.producer import EventProducer

DELIVERY = "fanout_notification_delivery_seconds"
LIKED = 'fanout_events_consumed_total{type="Liked"}'
ROWS = "fanout_notification_rows_written_total"
RUNS = "fanout_notification_runs_total"
BIG_AUTHOR = 10**9
PROBE_AUTHORS = range(2 * 10**9, 2 * 10**9 + 20)


class Probes:
    """Likes of fresh posts of the probe authors, each timed from Kafka's ack until its owner's first page
    of notifications shows it. Each author's client is made (connected, its token signed) before its first
    probe: a probe times the pipeline, not the making of a client."""

    def __init__(self, s: Settings, processes: ProcessGroup, producer: EventProducer) -> None:
        self.producer = producer
        tokens = Tokens(s)
        url = processes.url("read-api")
        self.clients = {a: httpx.Client(base_url=url, headers=tokens.headers(a), timeout=10) for a in PROBE_AUTHORS}
        for c in self.clients.values():
            c.get("/v1/notifications/unread").raise_for_status()  # connected
        self.ms: list[float] = []
        self.started = time.perf_counter()
        self.timeline: list[tuple[float, float]] = []  # (seconds since the run started, ms)

    def probe(self, author: int) -> None:
        post = self.producer.ids.next_id()
        like = Liked(event_time=wall_ms(), user_id=3 * 10**9, post_id=post, author_id=author)
        self.producer.send(like).result(30)
        acked = time.perf_counter()
        c = self.clients[author]
        while time.perf_counter() - acked < 30:
            first = c.get("/v1/notifications", params={"limit": 1}).json()["notifications"]
            if first and first[0]["target"] == post:
                self.ms.append((time.perf_counter() - acked) * 1000)
                self.timeline.append((round(acked - self.started, 3), round(self.ms[-1], 1)))
                return
            time.sleep(0.005)
        raise TimeoutError(f"a like of post {post} did not show in 30 s")

    def close(self) -> None:
        for c in self.clients.values():
            c.close()


def steady_likes(s: Settings, processes: ProcessGroup, producer: EventProducer, rate: float, seconds: float,
                 what: str, probers: int) -> dict[str, Any]:
    """Likes at `rate` per second for `seconds`, with `probers` probing side by side (each its own probe
    authors, each probe half a second after its last); the delivery figures."""
    before = processes.scrape("notifier")
    probes = Probes(s, processes, producer)
    rng = random.Random(what)  # each run's own likes: a run that repeated another's would write nothing
    stop = threading.Event()

    def probing(i: int) -> None:
        authors = itertools.cycle(PROBE_AUTHORS[i::probers])
        stop.wait(0.5 * i / probers)  # staggered: the probers' probes spread over each half second
        while not stop.is_set():
            probes.probe(next(authors))
            stop.wait(0.5)

    threads = [threading.Thread(target=probing, args=(i,), daemon=True) for i in range(probers)]
    for thread in threads:
        thread.start()
    started = time.monotonic()
    sent = 0
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task(f"{what}: likes at {rate:.0f}/s", total=int(rate * seconds))
        while sent < rate * seconds:
            author = rng.randrange(1, 1000)
            producer.send(Liked(event_time=wall_ms(), user_id=rng.randrange(1, 10**6),
                                post_id=author * 1000 + rng.randrange(100), author_id=author))
            sent += 1
            bar.advance(task)
            pause = started + sent / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
    producer.flush()
    stop.set()
    for thread in threads:
        thread.join(60)
    probes.close()
    time.sleep(1)
    after = processes.scrape("notifier")
    ms = sorted(probes.ms)
    return {"likes": sent, "rate": rate, "probes": len(ms),
            "probe_p50_ms": round(percentile(ms, 0.5), 1), "probe_p99_ms": round(percentile(ms, 0.99), 1),
            "probe_max_ms": round(ms[-1], 1) if ms else None, "timeline": probes.timeline,
            "notifier_p50_ms": round(histogram_quantile(after, before, DELIVERY, 0.5) * 1000, 1),
            "notifier_p99_ms": round(histogram_quantile(after, before, DELIVERY, 0.99) * 1000, 1)}


def flood(s: Settings, processes: ProcessGroup, producer: EventProducer, n: int, hot: int) -> dict[str, Any]:
    """`n` likes published at once: likes/s of the notifier, rows written per like, counts checked."""
    rng = random.Random(11)
    expected: dict[tuple[int, int], set[int]] = {}
    events: list[Event] = []
    hot_post = (4 * 10**9, 1)
    for i in range(n):
        author, post = hot_post if i < hot else (4 * 10**9 + 1 + i // 10_000, 10 + i // 10)
        user = rng.randrange(1, 10**7) if i >= hot else i + 1
        expected.setdefault((author, post), set()).add(user)
        events.append(Liked(event_time=wall_ms(), user_id=user, post_id=post, author_id=author))
    rng.shuffle(events)
    before = processes.scrape("notifier")
    base_likes = before.get(LIKED, 0.0)
    publish(producer, events)
    first: float | None = None
    first_done = done = 0.0
    stalled_at = time.monotonic() + 60  # nothing processed for a minute: something is wrong
    while done < n and time.monotonic() < stalled_at:
        processes.check_alive()
        now_done = processes.metric(LIKED, "notifier") - base_likes
        if now_done > done:
            stalled_at = time.monotonic() + 60
        done = now_done
        if first is None and done > 0:
            first = time.time()
            first_done = done
        time.sleep(0.25)
    after = processes.scrape("notifier")
    if first is None or done < n:
        raise TimeoutError(f"the notifier processed {done:.0f} of {n} likes")
    last = after[f'fanout_last_batch_timestamp_seconds{{source="{s.notifications_topic}"}}']
    rows = sum(v - before.get(k, 0.0) for k, v in after.items() if k.startswith(ROWS))
    runs = {state: after.get(f'{RUNS}{{state="{state}"}}', 0.0) - before.get(f'{RUNS}{{state="{state}"}}', 0.0)
            for state in ("memory", "store")}
    return {"likes": n, "posts": len(expected), "hot_post_likes": hot,
            "likes_per_s": round((n - first_done) / max(last - first, 1e-3)),
            "rows_written_per_like": round(rows / n, 3),
            "runs_from_memory": round(runs["memory"] / max(runs["memory"] + runs["store"], 1), 3),
            "counts_checked": check_counts(s, expected)}


def check_counts(s: Settings, expected: dict[tuple[int, int], set[int]]) -> int:
    """Every post's like count, as stored, is the number of distinct users who liked it."""
    res = open_resources(s, storage=True)
    try:
        async def read() -> list[int]:
            return [(await res.stores.notifications.actors(a, "like", p, 0))[0] for a, p in expected]

        stored = asyncio.run(read())
    finally:
        res.close()
    wrong = {k: (c, len(v)) for (k, v), c in zip(expected.items(), stored, strict=True) if c != len(v)}
    if wrong:
        raise AssertionError(f"like counts differ from the likes sent: {dict(list(wrong.items())[:5])}")
    return len(expected)


def worker_lag(s: Settings) -> int:
    with LagMeter(s) as meter:
        return meter.lag()


def bench(base: Settings, rate: float, seconds: float, followers: int, burst_posts: int, n_flood: int, hot: int,
          log_dir: Path, probers: int = 4) -> dict[str, Any]:
    probers = max(1, min(probers, len(PROBE_AUTHORS)))
    s = scenario_settings(base, "notify", celebrity_threshold=followers * 2)
    with ProcessGroup(s, log_dir).start("worker", "notifier", "read-api") as processes:
        producer = EventProducer(s)
        follows: list[Event] = [Followed(event_time=1_790_000_000_000 + i, follower_id=i + 1, followee_id=BIG_AUTHOR)
                                for i in range(followers)]
        seed_follows(s, processes, producer, follows, f"{followers:,} followers")
        quiet = steady_likes(s, processes, producer, rate, seconds, "quiet", probers)
        rng = random.Random(3)
        burst_events: list[Event] = [producer.new_post(rng.randrange(1, 5000), "burst") for _ in range(burst_posts)]
        publish(producer, [producer.new_post(BIG_AUTHOR, "to every follower"), *burst_events])
        lag_at_start = worker_lag(s)
        burst = steady_likes(s, processes, producer, rate, seconds, "burst", probers)
        burst["worker_lag_at_start"] = lag_at_start
        burst["worker_lag_at_end"] = worker_lag(s)
        flooded = flood(s, processes, producer, n_flood, hot)
        producer.close()
    return {"machine": machine(), "followers": followers, "burst_posts": burst_posts, "probers": probers,
            "quiet": quiet,
            "burst": burst, "burst_over_quiet_p99": round(burst["probe_p99_ms"] / max(quiet["probe_p99_ms"], 1e-3), 2),
            "flood": flooded}


def report(result: dict[str, Any], out: Path) -> str:
    """notifications.md and notifications.png in `out`; returns the Markdown."""
    from bench.charts import figure, grouped_bars, save, table

    q, b, f = result["quiet"], result["burst"], result["flood"]
    lines = [f"`{result['command']}` on commit `{result.get('commit', '?')}`", "",
             *table(["run", "likes/s offered", "probes", "p50 ms (GET shows it)", "p99 ms (GET shows it)",
                     "notifier p50 / p99 ms", "worker lag (events) at start / end"],
                    [["quiet", q["rate"], q["probes"], q["probe_p50_ms"], q["probe_p99_ms"],
                      f"{q['notifier_p50_ms']} / {q['notifier_p99_ms']}", "0 / 0"],
                     ["burst", b["rate"], b["probes"], b["probe_p50_ms"], b["probe_p99_ms"],
                      f"{b['notifier_p50_ms']} / {b['notifier_p99_ms']}",
                      f"{b['worker_lag_at_start']:,} / {b['worker_lag_at_end']:,}"]]), "",
             f"Burst p99 / quiet p99: **{result['burst_over_quiet_p99']}x**. The burst: {result['burst_posts']:,} "
             f"posts and one post pushed to {result['followers']:,} inboxes, published just before the likes.", "",
             *table(["likes at once", "posts", "likes of the hottest post", "likes/s, one notifier",
                     "rows written per like", "runs decided from memory", "like counts checked exact"],
                    [[f"{f['likes']:,}", f"{f['posts']:,}", f"{f['hot_post_likes']:,}", f"{f['likes_per_s']:,}",
                      f["rows_written_per_like"], f"{f.get('runs_from_memory', 0):.0%}",
                      f"{f['counts_checked']:,}"]])]
    fig, (bars, over_time) = figure(11, 4, ncols=2)
    grouped_bars(bars, ["p50", "p99"], {"quiet": [q["probe_p50_ms"], q["probe_p99_ms"]],
                                        "burst": [b["probe_p50_ms"], b["probe_p99_ms"]]})
    bars.set_ylabel("ms, like acked to GET showing it")
    bars.set_title("Notification delivery, quiet and during a bulk fan-out")
    for name, run in (("quiet", q), ("burst", b)):
        points = run.get("timeline", [])
        over_time.plot([t for t, _ in points], [ms for _, ms in points], marker=".", label=name)
    over_time.set_xlabel("seconds into the run (the burst is published at 0)")
    over_time.set_ylabel("ms, like acked to GET showing it")
    over_time.set_title("Each probe")
    over_time.legend()
    save(fig, out / "notifications.png")
    text = "\n".join(lines) + "\n"
    (out / "notifications.md").write_text(text)
    return text
