"""Fault tests: one stack of their own for the session (never the shared one), restarted where a test
killed part of it. FANOUT_FAULTS_NODES=3 runs the same tests on a 3-broker, 3-node cluster."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from cluster import own_stack, restart
from rig import AUTHOR, FOLLOWERS, REPORT, RESULTS, Oracle, rig

from fanout.settings import Settings

NODES = int(os.environ.get("FANOUT_FAULTS_NODES", "1"))


@pytest.fixture(scope="session")
def fault_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    heaps = {"cassandra_heap": "512M", "kafka_heap": "384m"} if NODES > 1 else {}
    with own_stack(tmp_path_factory.mktemp("fault-stack") / "state", nodes=NODES, **heaps) as s:
        yield s


@pytest.fixture
def stack_up(fault_stack: Settings) -> Settings:
    """The session's own stack with every server running (a previous test may have killed one)."""
    restart(fault_stack)
    return fault_stack


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not RESULTS:
        return
    terminalreporter.section(f"faults report (every run is also appended to {REPORT})")
    terminalreporter.write_line(f"{'fault':<70} {'n':>2} {'nodes':>5} {'expected':>9} {'missing':>7} {'extra':>5} "
                                f"{'drain s':>7}")
    for r in RESULTS:
        terminalreporter.write_line(f"{r['fault']:<70} {r['times']:>2} {r['nodes']:>5} {r['expected']:>9} "
                                    f"{r['missing']:>7} {r['extra']:>5} {r['drain_seconds']:>7}")


@pytest.fixture(scope="session")
def big_graph(fault_stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Oracle:
    """A keyspace where AUTHOR has 10,000 followers, seeded once through the pipeline, and its oracle."""
    restart(fault_stack)
    with rig(fault_stack, tmp_path_factory.mktemp("seed"), "graph", workers=1) as r:
        r.follow([(f, AUTHOR) for f in FOLLOWERS])
        seconds = r.drain(timeout=1800)
        print(f"[faults] seeded {len(FOLLOWERS)} follows through the pipeline in {seconds:.0f}s", flush=True)
        return r.oracle
