"""`fanout worker`: the Faust stream processor (one process; run more for more partitions)."""

from __future__ import annotations

import logging

import faust
from prometheus_client import start_http_server

from fanout.metrics import Metrics
from fanout.pipeline import Pipeline, SendTask
from fanout.settings import Settings
from services.bootstrap import open_storage
from streams.app import build_app


def run(settings: Settings, loglevel: str = "info") -> None:
    metrics = Metrics()
    storage = open_storage(settings, metrics)

    def pipeline_for(send_task: SendTask) -> Pipeline:
        return Pipeline(storage.store, settings, metrics, send_task)

    app = build_app(settings, metrics, pipeline_for)
    start_http_server(settings.worker_metrics_port, addr=settings.host, registry=metrics.registry)
    logging.getLogger("fanout").setLevel(logging.INFO)
    try:
        faust.Worker(app, loglevel=loglevel).execute_from_commandline()
    finally:
        storage.close()
