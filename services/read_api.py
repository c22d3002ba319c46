"""`fanout read-api`: GET /v1/feed (also GET /v1/users/{user_id}/feed), the caller's merged home feed.

Every feed request carries a bearer token (fanout/auth.py); a user reads only their own feed (403 for
another's), and a request that fails authentication reads and writes nothing.

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

from fanout.auth import TokenVerifier
from fanout.bootstrap import open_resources
from fanout.clock import Clock, wall_ms
from fanout.feed import CURSOR_PATTERN, InvalidCursor, home_feed, parse_cursor
from fanout.http import Caller, add_common_routes, error_responses, forbid_other, require_tokens
from fanout.ids import MAX_USER_ID
from fanout.metrics import Metrics
from fanout.ports import Stores
from fanout.seen import SeenRecorder
from fanout.settings import Settings


class FeedItem(BaseModel):
    post_id: int
    author_id: int
    created_at: int  # Unix milliseconds, from the post id
    body: str


Limit = Annotated[int, Query(ge=1, le=100, description="items per page")]
Cursor = Annotated[str | None, Query(max_length=19, pattern=CURSOR_PATTERN,
                                     description="next_cursor of the previous page")]


class FeedResponse(BaseModel):
    items: list[FeedItem]
    next_cursor: str | None  # pass back as ?cursor= for the next (older) page; null at the end
    regenerating: bool = False  # true: answered by a read-time pull while the inbox is being rebuilt


def create_app(stores: Stores, settings: Settings, metrics: Metrics, verifier: TokenVerifier,
               seen: SeenRecorder | None = None, clock_ms: Clock = wall_ms) -> FastAPI:
    app = FastAPI(title="Fanout read API", version="1")
    add_common_routes(app, metrics)
    require_tokens(app, verifier, metrics)

    @app.get("/v1/feed", response_model=FeedResponse, operation_id="own_feed", responses=error_responses(401))
    async def own_feed(reader: Caller, limit: Limit = 20, cursor: Cursor = None) -> FeedResponse:
        """The caller's home feed, newest first."""
        return await feed_page(reader, limit, cursor)

    @app.get("/v1/users/{user_id}/feed", response_model=FeedResponse, operation_id="user_feed",
             responses=error_responses(401, 403))
    async def feed(
        user_id: Annotated[int, Path(ge=1, le=MAX_USER_ID, description="the reader's user id: the token's own")],
        reader: Caller, limit: Limit = 20, cursor: Cursor = None,
    ) -> FeedResponse:
        """The home feed of `user_id`, who must be the caller (403 otherwise)."""
        return await feed_page(forbid_other(metrics, reader, user_id, "user"), limit, cursor)

    async def feed_page(user_id: int, limit: int, cursor: str | None) -> FeedResponse:
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
        app = create_app(res.stores, settings, res.metrics, TokenVerifier(settings), seen)
        uvicorn.run(app, host=settings.host, port=settings.read_api_port, log_level="warning")
    finally:
        res.close()
