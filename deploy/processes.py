"""Start the project's own processes (worker, read service, ingest service) as children, wait until
they serve, and stop them by pid. Used by `fanout demo`, the benchmarks, the end-to-end and fault tests.

More workers of one group are named `worker-2`, `worker-3`, ...: worker-N serves its metrics on
FANOUT_WORKER_METRICS_PORT + N - 1 (as under `fanout up --workers N`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from fanout.settings import Settings

PROCESSES = {
    "worker": ("worker", "worker_metrics_port", "/metrics"),
    "notifier": ("notifier", "notifier_metrics_port", "/metrics"),
    "read-api": ("read-api", "read_api_port", "/healthz"),
    "ingest-api": ("ingest-api", "ingest_api_port", "/healthz"),
}


def scrape(url: str) -> dict[str, float]:
    """Every sample of a process's /metrics page, keyed by 'name{labels}'."""
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        lines = response.read().decode().splitlines()
    return {key: float(value) for key, value in (line.rsplit(" ", 1) for line in lines if line and line[0] != "#")}


@dataclass
class ProcessGroup:
    settings: Settings
    log_dir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def url(self, name: str) -> str:
        return f"http://{self.settings.client_host}:{self._port(name)}"

    def _port(self, name: str) -> int:
        kind, number = _kind(name)
        return int(getattr(self.settings, PROCESSES[kind][1])) + number - 1

    def start(self, *names: str, timeout: float = 60.0, argv: list[str] | None = None) -> ProcessGroup:
        """Start these processes and wait until each serves (and each worker has its partitions). `argv`
        replaces the command (e.g. a worker built with other arguments for a test)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for name in names:
            kind, _ = _kind(name)
            env = {**os.environ, **self.settings.to_env(), _env_name(PROCESSES[kind][1]): str(self._port(name))}
            log = (self.log_dir / f"{name}.log").open("ab")
            log.write(f"\n===== starting {name} at {time.ctime()} =====\n".encode())
            log.flush()
            cmd = argv or [sys.executable, "-m", "services.cli", PROCESSES[kind][0]]
            self.procs[name] = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL)
            log.close()
        try:
            for name in names:
                self._wait_serving(name, timeout)
            for name in names:
                if _kind(name)[0] in ("worker", "notifier"):
                    self._wait_worker_assigned(name, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def kill(self, name: str) -> int:
        """kill -9 one process (no chance to commit or leave its group); returns its pid."""
        proc = self.procs.pop(name)
        proc.kill()
        proc.wait(30)
        return proc.pid

    def _wait_serving(self, name: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        url = self.url(name) + PROCESSES[_kind(name)[0]][2]
        while time.monotonic() < deadline:
            if self.procs[name].poll() is not None:
                raise RuntimeError(f"{name} exited with {self.procs[name].returncode}:\n{self.log_tail(name)}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"{name} did not serve {url} within {timeout:.0f}s:\n{self.log_tail(name)}")

    def _wait_worker_assigned(self, name: str, timeout: float) -> None:
        """The worker is useful once Faust has its partitions ("Worker ready" in its log, this run's part)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "[^Worker]: Ready" in self.log(name).rsplit("===== starting", 1)[-1]:
                return
            if self.procs[name].poll() is not None:
                raise RuntimeError(f"{name} exited:\n{self.log_tail(name)}")
            time.sleep(0.3)
        raise TimeoutError(f"{name} not ready within {timeout:.0f}s:\n{self.log_tail(name)}")

    def metric(self, name: str, process: str = "worker") -> float:
        """A counter of one of the processes, summed over its label sets; `name` may carry labels
        (`fanout_posts_total{tier="pull"}`)."""
        return sum(value for key, value in self.scrape(process).items()
                   if key == name or key.startswith(name + "{") or ("{" in name and key.startswith(name[:-1])))

    def scrape(self, process: str = "worker") -> dict[str, float]:
        return scrape(self.url(process))

    def check_alive(self) -> None:
        """Raise if a process of the group has exited (e.g. a crashed worker would stall a drain)."""
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.log_tail(name)}")

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def log_tail(self, name: str, lines: int = 30) -> str:
        return "\n".join(self.log(name).splitlines()[-lines:])

    def stop(self, *names: str, timeout: float = 30.0) -> None:
        for name in names or list(self.procs):
            proc = self.procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _kind(name: str) -> tuple[str, int]:
    """("worker", 2) for "worker-2"; ("read-api", 1) for "read-api"."""
    base, _, number = name.rpartition("-")
    if base in PROCESSES and number.isdigit():
        return base, int(number)
    return name, 1


def _env_name(field_name: str) -> str:
    return "FANOUT_" + field_name.upper()
