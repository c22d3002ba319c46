"""A worker killed with SIGKILL in the middle of a micro-batch (a burst of many small posts whose rows are
written together) loses nothing: the restarted worker replays what was not committed, and every inbox row
the events call for is there, checked row by row against an oracle. (Can move to tests/faults.)"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from live import own_deployment

from deploy.processes import ProcessGroup
from fanout.adapters.cassandra import connect
from fanout.core.events import Event, Followed, PostCreated
from fanout.lag import wait_until_drained
from fanout.settings import Settings
from fanout.write.producer import EventProducer

pytestmark = pytest.mark.e2e

AUTHORS = 300
USERS = range(1, 2001)
POSTS = 3000


@pytest.fixture(params=[1, 3], ids=["one-batch-at-a-time", "3-batches-in-flight"])
def crash_settings(stack: Settings, unique: str, request: pytest.FixtureRequest) -> Iterator[Settings]:
    # Batches in flight are acknowledged in the order taken (fanout/write/runner.py InFlight): killed with 3 in
    # flight, the restarted worker must still find every row.
    with own_deployment(stack, f"e2e-crash{unique}", batches_in_flight=request.param) as s:
        yield s


def publish(producer: EventProducer, events: list[Event]) -> None:
    for f in [producer.send(e) for e in events]:
        f.result(60)


def test_a_worker_killed_mid_batch_loses_no_inbox_row(crash_settings: Settings, tmp_path: Path) -> None:
    s = crash_settings
    rng = random.Random(10)
    authors = list(range(1_000_001, 1_000_001 + AUTHORS))
    followers = {a: rng.sample(USERS, rng.randint(3, 25)) for a in authors}
    t0 = int(time.time() * 1000) - 60_000
    follows: list[Event] = [Followed(event_time=t0 + i, follower_id=f, followee_id=a)
                            for i, (a, f) in enumerate((a, f) for a in authors for f in followers[a])]
    producer = EventProducer(s)
    first = ProcessGroup(s, tmp_path / "first").start("worker")
    try:
        publish(producer, follows)
        wait_until_drained(s, timeout=240, on_lag=lambda _: first.check_alive())
        posts: list[PostCreated] = [producer.new_post(rng.choice(authors), f"post {i}") for i in range(POSTS)]
        expected = {(f, p.post_id) for p in posts for f in followers[p.author_id]}
        for p in posts:
            producer.send(p)
        producer.flush()
        written = 0.0
        deadline = time.monotonic() + 120
        while written == 0 and time.monotonic() < deadline:  # the first flush of rows has landed ...
            written = first.metric("fanout_inbox_rows_written_total")
        first.procs["worker"].kill()  # ... and the next micro-batches are in flight: SIGKILL, no cleanup
        first.procs["worker"].wait(10)
        assert 0 < written < len(expected), f"killed at {written} of {len(expected)} rows: not mid-burst"
    finally:
        first.stop()
    with ProcessGroup(s, tmp_path / "restarted").start("worker") as second:
        wait_until_drained(s, timeout=300, on_lag=lambda _: second.check_alive())
        replayed = second.metric("fanout_inbox_rows_written_total")
    producer.close()
    cluster, session = connect(s, s.keyspace)
    try:
        rows = {(r.user_id, r.post_id) for r in session.execute("SELECT user_id, post_id FROM inbox")
                if r.post_id is not None}  # a partition with only its reader's state (statics) is no row
    finally:
        cluster.shutdown()
    missing, extra = expected - rows, rows - expected
    assert not missing, f"{len(missing)} of {len(expected)} rows missing after the crash, e.g. {sorted(missing)[:5]}"
    assert not extra, f"{len(extra)} rows nobody should have, e.g. {sorted(extra)[:5]}"
    assert replayed > 0  # the restarted worker did write what the first one left unacknowledged
