"""`fanout ingest-api`: the ingest API (fanout/write/api.py) under uvicorn."""

from __future__ import annotations

import uvicorn

from fanout.api.auth import TokenVerifier
from fanout.bootstrap import open_resources
from fanout.settings import Settings
from fanout.write.api import create_app


def run(settings: Settings) -> None:
    """The process: a producer minting post ids under a leased node id, Cassandra (post authors for
    deletes, idempotency keys), and the app."""
    res = open_resources(settings, storage=True, producer=True, idempotency=True, lease=True)
    try:
        app = create_app(res.producer, res.metrics, TokenVerifier(settings), res.stores.posts, res.stores.graph,
                         res.keys, settings, res.stores.notifications)
        uvicorn.run(app, host=settings.host, port=settings.ingest_api_port, log_level="warning")
    finally:
        res.close()
