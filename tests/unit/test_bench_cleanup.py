"""A benchmark ended by SIGTERM still drops the keyspaces and topics of its scenarios (bench/scenario.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# A benchmark in a child process whose Cassandra and Kafka calls are stand-ins that record what they drop.
CHILD = """
import sys, time
from pathlib import Path
import bench.driver, bench.scenario as scenario
from fanout.settings import Settings

dropped = Path(sys.argv[1])
scenario.connect = lambda s: (type("Cluster", (), {"shutdown": lambda self: None})(), None)
bench.driver.drop_keyspace = lambda session, keyspace: dropped.open("a").write(f"keyspace {keyspace}\\n")
scenario.delete_topics = lambda s: dropped.open("a").write(f"topics {s.events_topic}\\n")
scenario._scenarios.append(Settings.load(env={}).isolated("bench-probe"))
with scenario.scenarios_dropped():
    print("running", flush=True)
    time.sleep(60)
"""


def test_a_terminated_benchmark_drops_its_scenarios(tmp_path: Path) -> None:
    dropped = tmp_path / "dropped"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(dropped)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "running"
        started = time.monotonic()
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=30) == 128 + signal.SIGTERM
        assert time.monotonic() - started < 30
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert dropped.read_text().splitlines() == ["keyspace bench_probe", "topics bench-probe.author-events"]
