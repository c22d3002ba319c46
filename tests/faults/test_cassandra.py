"""Cassandra dies or freezes in the middle of a 10k-follower fan-out: the workers wait (they neither exit
nor park anything), resume when it is back, and every inbox row is there, none extra. Every node is hit,
so on a cluster too this is a full outage."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from cluster import kill9, names, paused, restart
from rig import AUTHOR, FOLLOWERS, Oracle, rig

from fanout.settings import Settings

pytestmark = pytest.mark.faults

POSTS = 20
OUTAGE = 30  # seconds


def test_cassandra_kill_9_mid_fan_out_and_restart_after_30_s(stack_up: Settings, big_graph: Oracle,
                                                             tmp_path: Path) -> None:
    s = stack_up
    with rig(s, tmp_path / "logs", "kill-cassandra", big_graph) as r:
        r.post(AUTHOR, POSTS)
        at_kill = r.wait_rows(len(FOLLOWERS))
        for name in names(s, "cassandra"):
            kill9(s, name)
        time.sleep(OUTAGE)
        restart_seconds = restart(s)
        drain = r.drain()  # a worker that exited fails this at once
        outcome = r.compare("Cassandra kill -9 mid-fan-out, restarted after 30 s", 1, drain,
                            "make test-faults PYTEST_ARGS='-k test_cassandra_kill'", rows_at_kill=at_kill,
                            restart_seconds=round(restart_seconds, 1), **r.failure_counts())
        assert at_kill < POSTS * len(FOLLOWERS), "the fan-out was over before the kill"
        assert outcome.notes["outage_retries"] > 0 and outcome.notes["parked"] == 0
    assert (outcome.missing, outcome.extra) == (0, 0)


def test_cassandra_paused_30_s_mid_fan_out(stack_up: Settings, big_graph: Oracle, tmp_path: Path) -> None:
    s = stack_up
    with rig(s, tmp_path / "logs", "pause-cassandra", big_graph) as r:
        r.post(AUTHOR, POSTS)
        at_pause = r.wait_rows(len(FOLLOWERS))
        with paused(s, *names(s, "cassandra")):
            time.sleep(OUTAGE)
        resumed = time.monotonic()
        drain = r.drain()
        outcome = r.compare("Cassandra paused (SIGSTOP) 30 s mid-fan-out", 1, drain,
                            "make test-faults PYTEST_ARGS='-k test_cassandra_paused'", rows_at_pause=at_pause,
                            since_resume=round(time.monotonic() - resumed, 1), **r.failure_counts())
        assert at_pause < POSTS * len(FOLLOWERS), "the fan-out was over before the pause"
        assert outcome.notes["parked"] == 0
    assert (outcome.missing, outcome.extra) == (0, 0)
