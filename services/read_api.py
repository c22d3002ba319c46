"""`fanout read-api`: GET /v1/users/{user_id}/feed, the merged home feed of one user.

A normal read merges the inbox with the timelines of the celebrities the user follows. A user back after
FANOUT_ACTIVE_DAYS (or whose inbox the worker is rebuilding) gets an answer at once from the timelines of
the accounts they follow, with "regenerating": true. Reads are recorded as debounced UserSeen events on
Kafka, never as a database write per request.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable
from typing import Annotated, Any, Protocol

from fastapi import FastAPI, HTTPException, Path, Query
from pydantic import BaseModel

from fanout.events import UserSeen
from fanout.feed import FeedSource, InvalidCursor, parse_cursor, read_feed
from fanout.ids import MAX_ID
from fanout.metrics import Metrics
from fanout.settings import Settings
from fanout.store import Activity
from services.http_common import add_common_routes

log = logging.getLogger(__name__)


class ReadStore(FeedSource, Protocol):
    async def celebrities(self, user_id: int, limit: int) -> list[int]: ...
    async def hidden_authors(self, user_id: int) -> set[int]: ...
    async def activity(self, user_id: int) -> Activity: ...
    async def following(self, user_id: int, limit: int) -> list[int]: ...


class EventSink(Protocol):
    def send(self, event: UserSeen) -> concurrent.futures.Future[Any]: ...


class SeenRecorder:
    """Publishes UserSeen for a reader at most once per debounce period. The memory is only an
    optimisation: a second replica or a restart sends a duplicate, which the worker ignores."""

    def __init__(self, sink: EventSink, debounce_ms: int, max_users: int = 200_000) -> None:
        self.sink = sink
        self.debounce_ms = debounce_ms
        self.max_users = max_users
        self.last_sent: dict[int, int] = {}

    def seen(self, user_id: int, now_ms: int) -> None:
        if now_ms - self.last_sent.get(user_id, -self.debounce_ms) < self.debounce_ms:
            return
        if len(self.last_sent) >= self.max_users:
            self.last_sent.clear()
        self.last_sent[user_id] = now_ms

        def delivered(future: concurrent.futures.Future[Any]) -> None:
            if future.exception() is not None:  # not recorded: let the next read try again
                self.last_sent.pop(user_id, None)
                log.warning("could not record that user %d read their feed: %s", user_id, future.exception())

        self.sink.send(UserSeen(event_time=now_ms, user_id=user_id)).add_done_callback(delivered)


class FeedItem(BaseModel):
    post_id: int
    author_id: int
    created_at: int  # Unix milliseconds, from the post id
    body: str


class FeedResponse(BaseModel):
    items: list[FeedItem]
    next_cursor: str | None  # pass back as ?cursor= for the next (older) page; null at the end
    regenerating: bool = False  # true: answered by a read-time pull while the inbox is being rebuilt


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def create_app(store: ReadStore, settings: Settings, metrics: Metrics, seen: SeenRecorder | None = None,
               clock_ms: Callable[[], int] = wall_ms) -> FastAPI:
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
        activity, celebrities, hidden = await asyncio.gather(
            store.activity(user_id), store.celebrities(user_id, settings.max_celebrities_read),
            store.hidden_authors(user_id))
        returning = settings.strategy == "hybrid" and (activity.regenerating or (
            activity.last_seen is not None and now - activity.last_seen > settings.active_ms))
        if settings.strategy == "pull":  # the pull-everything baseline: merge every account followed
            followees = await store.following(user_id, settings.max_followees_read)
            page = await read_feed(store, user_id, limit, before, pull_authors=followees, use_inbox=False,
                                   hidden=hidden)
        elif returning:
            followees = await store.following(user_id, settings.regen_limit)
            page = await read_feed(store, user_id, limit, before, pull_authors=followees, use_inbox=False,
                                   hidden=hidden)
        else:
            page = await read_feed(store, user_id, limit, before, pull_authors=celebrities, hidden=hidden)
        if seen is not None:
            seen.seen(user_id, now)
        metrics.read_latency.observe(time.perf_counter() - started)
        metrics.feed_reads.labels("200").inc()
        return FeedResponse(
            items=[FeedItem(post_id=p.post_id, author_id=p.author_id, created_at=p.created_at, body=p.body)
                   for p in page.items],
            next_cursor=str(page.next_cursor) if page.next_cursor is not None else None,
            regenerating=returning,
        )

    return app
