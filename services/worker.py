"""`fanout worker`: the Faust stream processor (one process; run more for more partitions)."""

from __future__ import annotations

import dataclasses
import logging

import faust
from prometheus_client import start_http_server

from fanout.adapters.author_cache import AuthorStatsCache
from fanout.bootstrap import Resources, open_resources
from fanout.metrics import tune_gc
from fanout.settings import Settings
from fanout.write.faust_app import build_app
from fanout.write.pipeline import Pipeline, SendTask, SendUpdates


def run(settings: Settings, loglevel: str = "info", pipeline: type[Pipeline] = Pipeline) -> None:
    """The worker process; tests may hand in a Pipeline subclass (e.g. one whose handler always fails)."""
    res = open_resources(settings, storage=True)
    # This worker writes the stats of the authors whose partitions it owns: it caches them, and forgets
    # them whenever partitions move (fanout/adapters/author_cache.py says why that is exact).
    graph = AuthorStatsCache(res.stores.graph)
    stores = dataclasses.replace(res.stores, graph=graph)

    def pipeline_for(send_task: SendTask, send_updates: SendUpdates) -> Pipeline:
        return pipeline(stores, settings, res.metrics, send_task, send_updates)

    app = build_app(settings, res.metrics, pipeline_for, on_rebalance=graph.clear)
    serve(app, res, settings.worker_metrics_port, loglevel)


def serve(app: faust.App, res: Resources, metrics_port: int, loglevel: str) -> None:
    """Run a Faust app (the worker's or the notifier's) with its metrics on `metrics_port`, until it ends."""
    start_http_server(metrics_port, addr=res.settings.host, registry=res.metrics.registry)
    logging.getLogger("fanout").setLevel(logging.INFO)
    # Untuned, full collections stall the event loop (and every post being handled) for tens of
    # milliseconds every few seconds.
    tune_gc(res.metrics, res.settings.gc_gen0_threshold)
    try:
        faust.Worker(app, loglevel=loglevel).execute_from_commandline()
    finally:
        res.close()
