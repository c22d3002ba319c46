"""`fanout up`: the whole pipeline in the foreground, on a running stack. `fanout migrate` once, then the
worker(s), the notifier, the read API and the ingest API, supervised by deploy/supervisor.py: output prefixed with each
process's name, a process that exits restarted with backoff, all stopped on Ctrl-C or SIGTERM."""

from __future__ import annotations

import os
import sys

from deploy.supervisor import Program, Supervisor
from fanout.settings import Settings


def programs(settings: Settings, workers: int = 1) -> tuple[Program, list[Program]]:
    """The migration to run first, then the long-lived processes: workers 1..N (worker i has metrics on
    FANOUT_WORKER_METRICS_PORT + i - 1), the notifier, the read API and the ingest API, all with these settings."""
    env = {**os.environ, **settings.to_env()}
    fanout = [sys.executable, "-m", "services.cli"]
    host = settings.client_host
    migrate = Program("migrate", [*fanout, "migrate"], env)
    long_lived = [
        Program(f"worker-{i + 1}", [*fanout, "worker"],
                {**env, "FANOUT_WORKER_METRICS_PORT": str(settings.worker_metrics_port + i)},
                ready_url=f"http://{host}:{settings.worker_metrics_port + i}/metrics")
        for i in range(workers)
    ]
    long_lived += [
        Program("notifier", [*fanout, "notifier"], env,
                ready_url=f"http://{host}:{settings.notifier_metrics_port}/metrics"),
        Program("read-api", [*fanout, "read-api"], env, ready_url=f"http://{host}:{settings.read_api_port}/healthz"),
        Program("ingest-api", [*fanout, "ingest-api"], env,
                ready_url=f"http://{host}:{settings.ingest_api_port}/healthz"),
    ]
    return migrate, long_lived


def run(settings: Settings, workers: int = 1, stop_timeout: float = 20.0) -> int:
    """Supervise the pipeline until SIGINT or SIGTERM; the exit code for the shell (0 after a stop)."""
    migrate, long_lived = programs(settings, workers)
    return Supervisor(long_lived, before=[migrate], stop_timeout=stop_timeout).run()
