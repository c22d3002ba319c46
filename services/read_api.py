"""`fanout read-api`: GET /v1/users/{user_id}/feed, the merged home feed of one user.

A normal read merges the inbox with the timelines of the celebrities the user follows. A user back after
FANOUT_ACTIVE_DAYS (or whose inbox the worker is rebuilding) gets an answer at once from the timelines of
the accounts they follow, with "regenerating": true. Reads are recorded as debounced UserSeen events on
Kafka, never as a database write per request.
"""

from __future__ import annotations

import time
from typing import Annotated

import uvicorn
from fastapi import FastAPI, HTTPException, Path, Query
from pydantic import BaseModel

from fanout.bootstrap import open_resources
from fanout.clock import Clock, wall_ms
from fanout.feed import InvalidCursor, home_feed, parse_cursor
from fanout.http import add_common_routes
from fanout.ids import MAX_ID
from fanout.metrics import Metrics
from fanout.ports import Stores
from fanout.seen import SeenRecorder
from fanout.settings import Settings


class FeedItem(BaseModel):
    post_id: int
    author_id: int
    created_at: int  # Unix milliseconds, from the post id
    body: str


class FeedResponse(BaseModel):
    items: list[FeedItem]
    next_cursor: str | None  # pass back as ?cursor= for the next (older) page; null at the end
    regenerating: bool = False  # true: answered by a read-time pull while the inbox is being rebuilt


def create_app(stores: Stores, settings: Settings, metrics: Metrics, seen: SeenRecorder | None = None,
               clock_ms: Clock = wall_ms) -> FastAPI:
    app = FastAPI(title="Fanout read API", version="1")
    add_common_routes(app, metrics)

    @app.get("/v1/users/{user_id}/feed", response_model=FeedResponse)
    async def feed(
        user_id: Annotated[int, Path(ge=1, le=MAX_ID, description="the reader's user id")],
        limit: Annotated[int, Query(ge=1, le=100, description="items per page")] = 20,
        cursor: Annotated[str | None, Query(max_length=24, description="next_cursor of the previous page")] = None,
    ) -> FeedResponse:
        started = time.perf_counter()
        try:
            before = parse_cursor(cursor)
        except InvalidCursor as exc:
            metrics.feed_reads.labels("422").inc()
            raise HTTPException(status_code=422, detail=str(exc)) from None
        now = clock_ms()
        feed = await home_feed(stores, settings, user_id, limit, before, now)
        page = feed.page
        if seen is not None:
            seen.seen(user_id, now)
        metrics.read_latency.observe(time.perf_counter() - started)
        metrics.feed_reads.labels("200").inc()
        return FeedResponse(
            items=[FeedItem(post_id=p.post_id, author_id=p.author_id, created_at=p.created_at, body=p.body)
                   for p in page.items],
            next_cursor=str(page.next_cursor) if page.next_cursor is not None else None,
            regenerating=feed.regenerating,
        )

    return app


def run(settings: Settings) -> None:
    """The process: storage, a producer for UserSeen events, and the app under uvicorn."""
    res = open_resources(settings, storage=True, producer=True)
    try:
        seen = SeenRecorder(res.producer, settings.seen_debounce_seconds * 1000)
        app = create_app(res.stores, settings, res.metrics, seen)
        uvicorn.run(app, host=settings.host, port=settings.read_api_port, log_level="warning")
    finally:
        res.close()
