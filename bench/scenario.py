"""What every benchmark scenario does the same way: run in a keyspace and topics of its own, and feed
the pipeline, in bulk (the follow graph) or posts at a nominal rate (measured)."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import Progress

from deploy import stack as launcher
from deploy.processes import ProcessGroup
from fanout.adapters.cassandra import migrate
from fanout.adapters.cassandra.session import connect
from fanout.core.events import Event
from fanout.lag import wait_until_drained
from fanout.settings import Settings
from fanout.write.producer import EventProducer, delete_topics, ensure_topics

console = Console()


_scenarios: list[Settings] = []  # made by this process, dropped when its benchmark ends (scenarios_dropped)


def scenario_settings(base: Settings, name: str, **overrides: Any) -> Settings:
    """Settings of a scenario's own (keyspace, topics, consumer group), migrated and ready. Without the
    per-user read limit unless `overrides` set it: a scenario's few reader ids stand for many people, each
    read by a load generator far faster than a person reads."""
    overrides.setdefault("rate_limit_reads", "")
    s = base.isolated(f"bench-{name}{time.strftime('%H%M%S')}", **overrides)
    _scenarios.append(s)
    ensure_topics(s)
    migrate(s)
    return s


@contextmanager
def scenarios_dropped() -> Iterator[None]:
    """Run a benchmark, then drop the keyspace and topics of every scenario it made, however it ends: left
    behind, they pile up in Cassandra and Kafka and slow every later run down. A SIGTERM (a `kill` of the
    run, a CI timeout) ends it through SystemExit, so this cleanup runs then too, not only on Ctrl-C."""
    from bench.driver import drop_keyspace

    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm) if main else None
    try:
        yield
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
        if _scenarios:
            console.log(f"dropping the {len(_scenarios)} scenarios' keyspaces and topics")
            cluster, session = connect(_scenarios[0])
            try:
                while _scenarios:
                    s = _scenarios.pop()
                    drop_keyspace(session, s.keyspace)
                    delete_topics(s)
            finally:
                cluster.shutdown()


def _exit_on_sigterm(signum: int, frame: object) -> None:
    sys.exit(128 + signum)


def server_pids(base: Settings) -> dict[str, tuple[int, ...]]:
    """The pids of the stack's Cassandra and Kafka nodes (one each, or a cluster's), whose CPU the benchmarks
    count together by kind."""
    pids: dict[str, tuple[int, ...]] = {"cassandra": (), "kafka": ()}
    for srv in launcher.servers(base):
        if srv.kind in pids and (pid := launcher.running_pid(srv)) is not None:
            pids[srv.kind] += (pid,)
    return pids


def publish(producer: EventProducer, events: list[Event]) -> None:
    """Send every event and wait for Kafka's ack of each."""
    futures = [producer.send(e) for e in events]
    for f in futures:
        f.result(120)


def seed_follows(s: Settings, processes: ProcessGroup, producer: EventProducer, follows: list[Event],
                 what: str) -> float:
    """Publish the follow graph through the pipeline and wait until the worker has processed it."""
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task(f"seeding {what} through the pipeline", total=len(follows))
        for i in range(0, len(follows), 5000):
            publish(producer, follows[i : i + 5000])
            bar.advance(task, len(follows[i : i + 5000]))
    return wait_until_drained(s, timeout=1800, on_lag=lambda _: processes.check_alive())


def publish_at_rate(producer: EventProducer, posts: Sequence[tuple[int, str]], rate: float, what: str) -> None:
    """New posts (author, body) at `rate` per second, each with a fresh id at send time, so lag is
    measured from the real post time. Does not wait for acks."""
    started = time.monotonic()
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task(f"{what}: {len(posts)} posts at {rate:.0f}/s", total=len(posts))
        for i, (author, body) in enumerate(posts):
            producer.send(producer.new_post(author, body))
            bar.advance(task)
            pause = started + (i + 1) / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
