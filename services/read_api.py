"""`fanout read-api`: the read API (fanout/read/api.py) under uvicorn, in one process or FANOUT_READ_WORKERS."""

from __future__ import annotations

import os
import tempfile

import uvicorn

from fanout.read.api import build
from fanout.settings import Settings


def run(settings: Settings) -> None:
    """The process (or processes: FANOUT_READ_WORKERS) under uvicorn."""
    if settings.read_workers > 1:
        os.environ.update(settings.to_env())  # the workers are spawned: they read settings from the env
        # Each worker records its metrics in files here and /metrics sums them (prometheus_client's
        # multiprocess mode); a fresh directory, so no earlier run's values are added in.
        with tempfile.TemporaryDirectory(prefix="fanout-read-metrics-") as metrics_dir:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
            uvicorn.run("fanout.read.api:app_from_env", factory=True, workers=settings.read_workers,
                        host=settings.host, port=settings.read_api_port, log_level="warning")
    else:
        uvicorn.run(build(settings), host=settings.host, port=settings.read_api_port, log_level="warning")
