"""`fanout notifier`: notification feeds from the notifications topic, in a process of their own."""

from __future__ import annotations

from fanout.bootstrap import open_resources
from fanout.settings import Settings
from fanout.write.notifier import Notifier, build_notifier_app
from services.worker import serve


def run(settings: Settings, loglevel: str = "info") -> None:
    res = open_resources(settings, storage=True)
    app = build_notifier_app(settings, res.metrics,
                             lambda announce: Notifier(res.stores.notifications, settings, res.metrics, announce))
    serve(app, res, settings.notifier_metrics_port, loglevel)
