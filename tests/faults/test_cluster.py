"""On a 3-node cluster (FANOUT_FAULTS_NODES=3): one Cassandra node and one Kafka broker are killed (-9)
during a 10k-follower fan-out. Nothing is lost and the fan-out never stalls for longer than the failure
detection takes (a request timeout, a broker session), with no restart of anything."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from cluster import kill9, restart
from rig import AUTHOR, FOLLOWERS, Oracle, Rig, rig

from fanout.settings import Settings

pytestmark = pytest.mark.faults

POSTS = 20
DETECTION = 30.0  # seconds: the driver's 15 s request timeout, KRaft's 9 s broker session, with margin


def longest_stall(r: Rig, stop: threading.Event, out: list[float]) -> None:
    """Longest time the workers wrote no inbox row while the group still had work, sampled every 0.5 s."""
    last_rows, last_change, longest = r.rows_written(), time.monotonic(), 0.0
    while not stop.is_set():
        time.sleep(0.5)
        rows = r.rows_written()
        now = time.monotonic()
        if rows != last_rows:
            last_rows, last_change = rows, now
        else:
            longest = max(longest, now - last_change)
    out.append(longest)


def test_kill_9_one_cassandra_node_and_one_broker_mid_fan_out(stack_up: Settings, big_graph: Oracle,
                                                              tmp_path: Path) -> None:
    s = stack_up
    assert s.stack.nodes >= 3, "this test needs a cluster: run it with FANOUT_FAULTS_NODES=3 (make test-faults)"
    with rig(s, tmp_path / "logs", "cluster-kill", big_graph) as r:
        r.post(AUTHOR, POSTS)
        r.wait_rows(len(FOLLOWERS))
        stop, stall = threading.Event(), []
        watcher = threading.Thread(target=longest_stall, args=(r, stop, stall), daemon=True)
        watcher.start()
        killed = time.monotonic()
        kill9(s, "cassandra-2")
        kill9(s, "kafka-2")
        drain = r.drain()  # with a node and a broker still down
        stop.set()
        watcher.join(5)
        outcome = r.compare("one Cassandra node + one Kafka broker kill -9 mid-fan-out (3 nodes)", 1, drain,
                            "make test-faults FAULT_NODES=3 PYTEST_ARGS='-k test_kill_9_one'",
                            longest_stall_seconds=round(stall[0], 1),
                            drained_after_kill=round(time.monotonic() - killed, 1))
        restart(s)  # back to three for whatever runs next
    assert stall[0] < DETECTION
    assert (outcome.missing, outcome.extra) == (0, 0)
