"""Workers die and groups change during a big fan-out: every inbox row is there, none extra."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from rig import AUTHOR, FOLLOWERS, Oracle, rig

from fanout.settings import Settings

pytestmark = pytest.mark.faults

POSTS = 20


def test_kill_9_a_worker_three_times_during_a_10k_follower_fan_out(stack_up: Settings, big_graph: Oracle,
                                                                   tmp_path: Path) -> None:
    before = len(big_graph.expected)
    with rig(stack_up, tmp_path / "logs", "kill-worker", big_graph, workers=2) as r:
        lag_at_kill = []
        for i, posts in enumerate((7, 7, 6)):  # 20 posts in three waves, a kill in the middle of each
            r.post(AUTHOR, posts)
            r.wait_rows(r.rows_written() + len(FOLLOWERS))
            name = ("worker", "worker-2")[i % 2]
            lag_at_kill.append(r.lag())
            r.processes.kill(name)
            r.processes.start(name, timeout=180)
        recovered = time.monotonic()
        drain = r.drain()
        outcome = r.compare("worker kill -9 during a 10k-follower fan-out (2 workers)", 3, drain,
                            "make test-faults PYTEST_ARGS='-k test_kill_9_a_worker'", lag_at_kill=lag_at_kill,
                            since_last_restart=round(time.monotonic() - recovered, 1))
    assert all(lag > 0 for lag in lag_at_kill), f"a kill came when nothing was in flight: {lag_at_kill}"
    assert outcome.expected == before + len(FOLLOWERS) * POSTS
    assert (outcome.missing, outcome.extra) == (0, 0)


def test_a_worker_joins_and_one_leaves_mid_batch(stack_up: Settings, big_graph: Oracle, tmp_path: Path) -> None:
    before = len(big_graph.expected)
    with rig(stack_up, tmp_path / "logs", "rebalance", big_graph, workers=1) as r:
        with r.fan_out_under_way(AUTHOR):  # posts go on until just before the leave
            r.wait_rows(len(FOLLOWERS))
            r.processes.start("worker-2", timeout=180)  # joins: the group rebalances mid-fan-out
            rows_left_at_join = r.rows_left()
            by_worker = r.rows_by_worker()
            r.wait_rows(r.rows_written() + len(FOLLOWERS) // 2)
            wrote = {name: rows - by_worker.get(name, 0) for name, rows in r.rows_by_worker().items()}
            rows_left_at_leave = r.rows_left()
        leaving = max(wrote, key=wrote.__getitem__)  # the one holding the author's partition now
        r.processes.stop(leaving)  # leaves (SIGTERM): its batch in flight is not acknowledged
        left = time.monotonic()
        drain = r.drain()
        outcome = r.compare("rebalance mid-batch: a worker joins, then one leaves", 2, drain,
                            "make test-faults PYTEST_ARGS='-k test_a_worker_joins'",
                            rows_left_at_join=rows_left_at_join, rows_left_at_leave=rows_left_at_leave, leaving=leaving,
                            posts=r.rows_posted // len(FOLLOWERS), since_leave=round(time.monotonic() - left, 1))
    assert rows_left_at_join > 0 and rows_left_at_leave > 0, "the group changed when nothing was in flight"
    assert outcome.expected == before + r.rows_posted
    assert (outcome.missing, outcome.extra) == (0, 0)
