"""Containers killed mid-fan-out (`docker kill`, SIGKILL): a worker on any profile, a Kafka broker and a
Cassandra node on the cluster profile. Every inbox row is then compared with the oracle: 0 missing, 0 extra.
Then `--scale worker=3`: the partitions spread over three workers, and a backlog drains (timed against
one worker in the same run, for the report)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient
from conftest import NODES, ComposeDeployment
from faults.rig import Oracle, Outcome, scan

from fanout.core.events import Followed
from fanout.lag import consumer_lag
from fanout.write.producer import EventProducer

pytestmark = pytest.mark.docker

AUTHOR = 90_000  # no user of test_compose_pipeline follows it
FOLLOWERS = range(100_000, 103_000)
FOLLOW_TIME = 1_790_000_000_000
REPORT = Path(__file__).resolve().parents[2] / ".fanout" / "compose-report.json"


@dataclass
class BigFanOut:
    run: ComposeDeployment
    producer: EventProducer
    oracle: Oracle

    def post(self, n: int) -> None:
        """`n` posts by AUTHOR through the published Kafka port, as the services' user; acknowledged."""
        events = [self.producer.new_post(AUTHOR, f"post {i} by {AUTHOR}") for i in range(n)]
        for future in [self.producer.send(e) for e in events]:
            future.result(60)
        for e in events:
            self.oracle.posted(e.post_id, AUTHOR)

    def compare(self, fault: str, lag_at_kill: int, drain_seconds: float) -> Outcome:
        cluster, session = self.run.cassandra()
        try:
            rows = scan(session, f"SELECT user_id, post_id FROM {self.run.settings.keyspace}.inbox")
            got = {(r.user_id, r.post_id) for r in rows if r.post_id is not None and r.user_id in FOLLOWERS}
        finally:
            cluster.shutdown()
        expected = self.oracle.expected
        outcome = Outcome(fault, 1, len(expected), len(expected - got), len(got - expected), round(drain_seconds, 1),
                          self.run.nodes, f"FANOUT_DOCKER_NODES={self.run.nodes} make test-docker",
                          {"lag_at_kill": lag_at_kill})
        outcome.record()
        print(f"[compose] {outcome}", flush=True)
        return outcome


@pytest.fixture(scope="module")
def fan_out(deployment: ComposeDeployment) -> Iterator[BigFanOut]:
    """AUTHOR with 3,000 followers, followed through the published Kafka port and drained."""
    producer = EventProducer(deployment.settings, **{"message.timeout.ms": 300_000})
    big = BigFanOut(deployment, producer, Oracle(deployment.settings.keyspace))
    follows = [Followed(event_time=FOLLOW_TIME + i, follower_id=f, followee_id=AUTHOR) for i, f in enumerate(FOLLOWERS)]
    for future in [producer.send(e) for e in follows]:
        future.result(60)
    for f in FOLLOWERS:
        big.oracle.followed(f, AUTHOR)
    deployment.drain(timeout=600)
    try:
        yield big
    finally:
        producer.close()


def kill_mid_fan_out(fan_out: BigFanOut, service: str, index: int = 1, posts: int = 20) -> Outcome:
    """Post, kill `service` while the worker group is still behind, bring it back, drain, compare."""
    run = fan_out.run
    fan_out.post(posts)
    time.sleep(0.5)
    lag = consumer_lag(run.settings)
    run.kill(service, index)
    time.sleep(3)  # the cluster notices: the group rebalances, replicas time out
    started = time.monotonic()
    run.project.up()
    outcome = fan_out.compare(f"compose: docker kill {run.container(service, index)} mid-fan-out", lag,
                              run.drain() + time.monotonic() - started)
    assert lag > 0, "the kill came after the fan-out had finished: nothing was tested"
    return outcome


def test_a_worker_killed_mid_fan_out_loses_and_duplicates_nothing(fan_out: BigFanOut) -> None:
    outcome = kill_mid_fan_out(fan_out, "worker")
    assert (outcome.missing, outcome.extra) == (0, 0)


if NODES >= 3:  # the cluster profile: one broker of three, one node of three

    @pytest.mark.parametrize("service", ["kafka-2", "cassandra-2"])
    def test_a_server_killed_mid_fan_out_loses_and_duplicates_nothing(fan_out: BigFanOut, service: str) -> None:
        # Not the first node: the host's Cassandra session goes through its published port.
        outcome = kill_mid_fan_out(fan_out, service)
        assert (outcome.missing, outcome.extra) == (0, 0)


def _group_members(run: ComposeDeployment) -> list[int]:
    """Partitions of the events topic held by each member of the worker group."""
    s = run.settings
    admin = AdminClient(s.kafka_config("admin"))
    [described] = admin.describe_consumer_groups([s.app_id]).values()
    members = described.result(30).members
    return sorted(sum(1 for tp in m.assignment.topic_partitions if tp.topic == s.events_topic) for m in members)


def _drain_backlog(fan_out: BigFanOut, workers: int, posts: int) -> dict[str, float]:
    """Stop the workers, queue `posts` posts, start `workers` of them; rows/s until the lag is 0."""
    run = fan_out.run
    run.compose("stop", "worker")
    fan_out.post(posts)
    started = time.monotonic()
    run.project.up("worker", scale={"worker": workers})
    run.drain()
    seconds = time.monotonic() - started
    rows = posts * len(FOLLOWERS)
    return {"workers": workers, "posts": posts, "rows": rows, "seconds": round(seconds, 1),
            "rows_per_s": round(rows / seconds)}


def test_scaled_workers_share_the_partitions_and_drain_a_backlog(fan_out: BigFanOut) -> None:
    run = fan_out.run
    try:
        one = _drain_backlog(fan_out, 1, posts=40)
        three = _drain_backlog(fan_out, 3, posts=40)
        spread = _group_members(run)
    finally:
        run.project.up(scale={"worker": 1})  # the later tests' one worker, whatever happened here
    outcome = fan_out.compare("compose: backlog drained by --scale worker=1, then 3", 0, three["seconds"])
    figures = {"nodes": run.nodes, "one_worker": one, "three_workers": three, "partitions_per_worker": spread,
               "speed_up": round(three["rows_per_s"] / one["rows_per_s"], 2)}
    print(f"[compose] scaling: {json.dumps(figures)}", flush=True)
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    with REPORT.open("a") as out:
        out.write(json.dumps({"scaling": figures, "at": time.strftime("%Y-%m-%d %H:%M:%S")}) + "\n")
    assert spread == [1, 1, 2]  # 4 partitions over 3 workers
    assert (outcome.missing, outcome.extra) == (0, 0)
