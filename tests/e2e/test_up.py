"""`fanout up` on the real stack, in a keyspace, topics and ports of its own: both APIs answer, a
killed read API is restarted, and SIGTERM stops every process it started, exiting 0."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable

import pytest
from ports import free_port

from fanout.adapters.cassandra import connect
from fanout.settings import Settings

pytestmark = pytest.mark.e2e



def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_fanout_up_serves_restarts_a_killed_process_and_stops_everything(stack: Settings, unique: str) -> None:
    s = stack.isolated(f"e2e-up{unique}", read_api_port=free_port(), ingest_api_port=free_port(),
                       worker_metrics_port=free_port(), notifier_metrics_port=free_port())
    up = subprocess.Popen([sys.executable, "-m", "services.cli", "up"], env={**os.environ, **s.to_env()},
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(up.stdout or []), daemon=True)
    reader.start()

    def started(name: str | None = None) -> list[int]:
        who = re.escape(name) if name else r"[-\w]+"
        return [int(pid) for pid in re.findall(rf"started {who} \(pid (\d+)\)", "".join(lines))]

    def wait_for(condition: Callable[[], bool], what: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert up.poll() is None, f"fanout up exited with {up.returncode}:\n{''.join(lines[-40:])}"
            assert time.monotonic() < deadline, f"{what} within {timeout}s:\n{''.join(lines[-40:])}"
            time.sleep(0.2)

    read_api = f"http://{s.client_host}:{s.read_api_port}/healthz"
    ingest_api = f"http://{s.client_host}:{s.ingest_api_port}/healthz"
    try:
        wait_for(lambda: answers(read_api) and answers(ingest_api), "both APIs answer /healthz")
        assert "migrate" in "".join(lines) and len(started("worker-1")) == 1

        [first] = started("read-api")
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: len(started("read-api")) == 2 and answers(read_api), "the read API restarted")
        assert "read-api was killed by SIGKILL" in "".join(lines)
        assert started("read-api")[1] != first

        up.send_signal(signal.SIGTERM)
        assert up.wait(90) == 0, "".join(lines[-40:])
        reader.join(10)
        names = set(re.findall(r"started ([-\w]+) ", "".join(lines)))
        assert names == {"migrate", "worker-1", "notifier", "read-api", "ingest-api"}
        assert [pid for pid in started() if alive(pid)] == []
        assert "everything stopped" in "".join(lines)
    finally:
        if up.poll() is None:
            up.kill()
            up.wait(10)
        for pid in started():
            if alive(pid):
                os.kill(pid, signal.SIGKILL)  # only what this test's `fanout up` started
        cluster, _ = connect(s)
        try:
            cluster.connect().execute(f"DROP KEYSPACE IF EXISTS {s.keyspace}", timeout=60)
        finally:
            cluster.shutdown()
