"""Stacks of their own for fault tests: servers that may be killed, paused and restarted.

Every fault test starts its own stack (a temp state dir, free ports, the shared jar cache) and stops it
by pid at the end, so killing a server never touches a stack anybody else uses.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ports import free_ports

from deploy import credentials
from deploy import stack as launcher
from fanout.settings import Settings

PORTS = ["kafka_port", "kafka_controller_port", "cassandra_port", "cassandra_storage_port", "prometheus_port",
         "worker_metrics_port", "read_api_port", "ingest_api_port"]



def cache_dir() -> Path:
    """The jar cache: FANOUT_CACHE_DIR if set, else the checkout's (nothing is downloaded twice)."""
    return Path(os.environ.get("FANOUT_CACHE_DIR") or launcher.PROJECT_ROOT / ".fanout" / "cache").resolve()


def isolated_settings(state_dir: Path, **overrides: Any) -> Settings:
    """Settings of a stack of its own: free ports, `state_dir`, the shared jar cache, modest heaps."""
    ports = dict(zip(PORTS, free_ports(len(PORTS)), strict=True))
    values: dict[str, Any] = {"state_dir": state_dir, "cache_dir": cache_dir(), "kafka_heap": "384m",
                              "cassandra_heap": "768M", **ports}
    return Settings.load(**{**values, **overrides})


@contextmanager
def own_stack(state_dir: Path, **overrides: Any) -> Iterator[Settings]:
    """Start a stack of its own, yield its settings (with the credentials its servers require), stop every
    server of it by pid (even after a failure)."""
    s = isolated_settings(state_dir, **overrides)
    try:
        launcher.up(s, say=lambda m: print(f"[own stack] {m}", flush=True))
        yield credentials.fill(s)
    finally:
        for srv in launcher.servers(s):  # a paused server would ignore SIGTERM until it is continued
            pid = launcher.running_pid(srv)
            if pid is not None:
                os.kill(pid, signal.SIGCONT)
        launcher.down(s, say=lambda m: print(f"[own stack] {m}", flush=True))


def names(s: Settings, kind: str) -> list[str]:
    """The servers of one kind: ["cassandra"] alone, ["cassandra-1", "cassandra-2", ...] in a cluster."""
    return [srv.name for srv in launcher.servers(s) if srv.kind == kind]


def server_pid(s: Settings, name: str) -> int:
    pid = launcher.running_pid(launcher.server_by_name(s, name))
    assert pid is not None, f"{name} is not running"
    return pid


def kill9(s: Settings, name: str) -> None:
    """kill -9 one server and wait until it is gone and its ports are closed (a JVM's threads outlive
    the main one for a moment); its pid file stays stale for `up` to clean."""
    srv = launcher.server_by_name(s, name)
    pid = server_pid(s, name)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while launcher.running_pid(srv) is not None or any(launcher.port_open(srv.host, p) for p in srv.ports):
        try:
            os.waitpid(pid, os.WNOHANG)  # reap it if this process started it
        except ChildProcessError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} (pid {pid}) still there 30 s after SIGKILL")
        time.sleep(0.1)


def restart(s: Settings) -> float:
    """`fanout stack up` again: starts what is not running and waits until ready; returns seconds taken."""
    t0 = time.monotonic()
    launcher.up(s, say=lambda m: print(f"[own stack] {m}", flush=True))
    return time.monotonic() - t0


@contextmanager
def paused(s: Settings, *server_names: str) -> Iterator[None]:
    """SIGSTOP these servers for the duration of the block, SIGCONT after it."""
    pids = [server_pid(s, name) for name in server_names]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
