"""`fanout notifier`: notification feeds from the notifications topic, in a process of their own."""

from __future__ import annotations

import logging

import faust
from prometheus_client import start_http_server

from fanout.bootstrap import open_resources
from fanout.metrics import tune_gc
from fanout.settings import Settings
from fanout.write.notifier import Notifier, build_notifier_app


def run(settings: Settings, loglevel: str = "info") -> None:
    res = open_resources(settings, storage=True)
    app = build_notifier_app(settings, res.metrics,
                             lambda announce: Notifier(res.stores.notifications, settings, res.metrics, announce))
    start_http_server(settings.notifier_metrics_port, addr=settings.host, registry=res.metrics.registry)
    logging.getLogger("fanout").setLevel(logging.INFO)
    tune_gc(res.metrics, settings.gc_gen0_threshold)
    try:
        faust.Worker(app, loglevel=loglevel).execute_from_commandline()
    finally:
        res.close()
