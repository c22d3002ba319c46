"""Process entry points of the two HTTP services: build dependencies, then serve with uvicorn."""

from __future__ import annotations

import uvicorn

from fanout.metrics import Metrics
from fanout.producer import EventProducer
from fanout.settings import Settings
from services import ingest_api as ingest
from services import read_api as read
from services.bootstrap import open_storage


def read_api(settings: Settings) -> None:
    metrics = Metrics()
    storage = open_storage(settings, metrics)
    producer = EventProducer(settings)  # debounced UserSeen events
    try:
        seen = read.SeenRecorder(producer, settings.seen_debounce_seconds * 1000)
        app = read.create_app(storage.store, settings, metrics, seen)
        uvicorn.run(app, host=settings.host, port=settings.read_api_port, log_level="warning")
    finally:
        producer.close()
        storage.close()


def ingest_api(settings: Settings) -> None:
    metrics = Metrics()
    producer = EventProducer(settings, node_id=settings.node_id)
    try:
        app = ingest.create_app(producer, metrics)
        uvicorn.run(app, host=settings.host, port=settings.ingest_api_port, log_level="warning")
    finally:
        producer.close()
