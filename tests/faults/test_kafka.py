"""A Kafka broker is killed (-9) and restarted five times during a steady mix of posts and new follows:
producers and workers ride it out, and every inbox row is there, none extra. Alone, the broker is the
whole of Kafka; in a cluster a different broker goes down each round."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import Future
from pathlib import Path

import pytest
from cluster import kill9, names, restart
from rig import Rig, rig

from bench.workload import power_law_graph
from fanout.core.events import Event, Followed
from fanout.settings import Settings

pytestmark = pytest.mark.faults

ROUNDS = 5
RATE = 20  # events per second: posts, and every tenth a new follow


def steady_mix(r: Rig, users: list[int], stop: threading.Event, sent: list[Future[object]]) -> None:
    """Posts by random authors and new follows at RATE per second until `stop`; the oracle takes each as it
    is sent (the test checks at the end that Kafka acknowledged every one)."""
    rng = random.Random(5)
    n = 0
    started = time.monotonic()
    while not stop.is_set():
        n += 1
        author = rng.choice(users[: len(users) // 10]) if rng.random() < 0.8 else rng.choice(users)
        if n % 10 == 0:
            follower = rng.choice([u for u in users if u != author])
            event: Event = Followed(event_time=int(time.time() * 1000), follower_id=follower, followee_id=author)
            r.oracle.followed(follower, author)
        else:
            event = r.producer.new_post(author, f"mix {n}")
            r.oracle.posted(event.post_id, author)
        sent.append(r.producer.send(event))  # type: ignore[arg-type]
        time.sleep(max(0.0, started + n / RATE - time.monotonic()))


def test_kafka_broker_kill_9_and_restart_5_times_during_a_steady_mix(stack_up: Settings, tmp_path: Path) -> None:
    s = stack_up
    graph = power_law_graph(600, seed=3, min_followers=2)
    with rig(s, tmp_path / "logs", "kill-kafka") as r:
        r.follow([(f, a) for a, fs in graph.followers.items() for f in sorted(fs)])
        r.drain()
        stop, sent = threading.Event(), []
        mixer = threading.Thread(target=steady_mix, args=(r, graph.users, stop, sent), daemon=True)
        mixer.start()
        brokers = names(s, "kafka")
        restarts = []
        for i in range(ROUNDS):
            time.sleep(8)
            kill9(s, brokers[i % len(brokers)])
            time.sleep(3)
            restarts.append(round(restart(s), 1))
        recovered = time.monotonic()  # the mix goes on for a few seconds after the last restart
        time.sleep(5)
        stop.set()
        mixer.join(30)
        for future in sent:
            future.result(300)  # every event acknowledged by Kafka in the end
        r.drain()
        outcome = r.compare("Kafka broker kill -9 / restart x5 during a steady mix", ROUNDS,
                            time.monotonic() - recovered, "make test-faults PYTEST_ARGS='-k test_kafka_broker'",
                            events=len(sent), restart_seconds=restarts)
    assert len(sent) > ROUNDS * 8 * RATE * 0.8
    assert (outcome.missing, outcome.extra) == (0, 0)
