"""`fanout read-api`: GET /v1/users/{user_id}/feed, the merged home feed of one user."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import FastAPI, HTTPException, Path, Query
from pydantic import BaseModel

from fanout.feed import FeedSource, InvalidCursor, parse_cursor, read_feed
from fanout.ids import MAX_ID
from fanout.metrics import Metrics
from fanout.settings import Settings
from services.http_common import add_common_routes


class FeedItem(BaseModel):
    post_id: int
    author_id: int
    created_at: int  # Unix milliseconds, from the post id
    body: str


class FeedResponse(BaseModel):
    items: list[FeedItem]
    next_cursor: str | None  # pass back as ?cursor= for the next (older) page; null at the end


def create_app(store: FeedSource, settings: Settings, metrics: Metrics) -> FastAPI:
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
        page = await read_feed(store, user_id, limit, before, settings.max_celebrities_read)
        metrics.read_latency.observe(time.perf_counter() - started)
        metrics.feed_reads.labels("200").inc()
        return FeedResponse(
            items=[FeedItem(post_id=p.post_id, author_id=p.author_id, created_at=p.created_at, body=p.body)
                   for p in page.items],
            next_cursor=str(page.next_cursor) if page.next_cursor is not None else None,
        )

    return app
