"""The read API: GET /v1/feed (also GET /v1/users/{user_id}/feed), the caller's merged home feed, and
its live stream GET /v1/feed/stream.

Every feed request carries a bearer token (fanout/api/auth.py); a user reads only their own feed (403 for
another's), and a request that fails authentication reads and writes nothing.

A normal read merges the inbox with the timelines of every celebrity the user follows. A user back after
FANOUT_ACTIVE_DAYS (or whose inbox the worker is rebuilding) gets an answer at once from the timelines of
the accounts they follow, with "regenerating": true. Reads are recorded as debounced UserSeen events on
Kafka's feed-reads topic, never as a database write per request.

A read costs at most about one Cassandra request: the reader's state comes with the head of their inbox,
and post bodies, timeline heads and readers' recent first pages come from caches kept current by the
worker's feed updates (fanout/read/read_cache.py, fanout/read/reader_cache.py, fanout/read/updates.py), so a warm read
of a feed's head costs none. `fanout_read_cassandra_requests` counts the requests of every read.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated, Any

import orjson
from fastapi import FastAPI, Header, HTTPException, Path, Query, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from fanout.adapters.cassandra.session import count_requests
from fanout.api.auth import TokenVerifier
from fanout.api.http import (
    EventStream,
    Reader,
    Streamer,
    add_common_routes,
    error_responses,
    forbid_other,
    require_tokens,
)
from fanout.api.rate_limits import RateLimited, RateLimits
from fanout.bootstrap import open_resources
from fanout.core.clock import Clock, wall_ms
from fanout.core.events import CelebritySetChanged, FeedUpdate, FollowChanged, PostDelivered, PostRemoved, PostStored
from fanout.core.ids import MAX_USER_ID
from fanout.core.model import Tier
from fanout.core.policy import is_returning
from fanout.core.ports import Stores
from fanout.core.rates import DecayedRates
from fanout.metrics import Metrics, tune_gc
from fanout.read.feed import CURSOR_PATTERN, InvalidCursor, PageAt, SetsAt, home_feed, parse_cursor
from fanout.read.notifications_api import add_notification_routes
from fanout.read.page import add_page_routes, ingest_origins
from fanout.read.read_cache import CachedPosts
from fanout.read.reader_cache import ReaderPages, ReaderSetsCache
from fanout.read.seen import SeenRecorder
from fanout.read.stream import StreamHub, StreamLimits, TooManyStreams, catch_up_items
from fanout.read.updates import UpdatesListener
from fanout.settings import Settings

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


class FeedItem(BaseModel):
    post_id: int
    author_id: int
    created_at: int  # Unix milliseconds, from the post id
    body: str
    via: str  # "inbox": pushed into the reader's inbox; "timeline": pulled from a celebrity's timeline


Limit = Annotated[int, Query(ge=1, le=100, description="items per page")]
Cursor = Annotated[str | None, Query(max_length=19, pattern=CURSOR_PATTERN,
                                     description="next_cursor of the previous page")]
UserId = Annotated[int, Path(ge=1, le=MAX_USER_ID, description="the reader's user id: the token's own")]


class FeedResponse(BaseModel):
    items: list[FeedItem]
    next_cursor: str | None  # pass back as ?cursor= for the next (older) page; null at the end
    regenerating: bool = False  # true: answered by a read-time pull while the inbox is being rebuilt


def pull_limit(limits: RateLimits, metrics: Metrics, settings: Settings, user_id: int) -> Callable[[], None]:
    """Counts a feed page read below an inbox's cap against the user's pull limit; a 429 beyond it."""
    def take() -> None:
        try:
            limits.take("pulls", str(user_id))
        except RateLimited as exc:
            metrics.rate_limited.labels("pulls").inc()
            raise HTTPException(429, f"{exc}: a page below the newest {settings.inbox_cap} of a feed reads every "
                                     "account followed", headers={"Retry-After": str(exc.retry_after)}) from None
    return take


def create_app(stores: Stores, settings: Settings, metrics: Metrics, verifier: TokenVerifier,
               seen: SeenRecorder | None = None, clock_ms: Clock = wall_ms, lifespan: Lifespan | None = None,
               sets: SetsAt | None = None, page_at: PageAt | None = None, hub: StreamHub | None = None) -> FastAPI:
    app = FastAPI(title="Fanout read API", version="1", docs_url=None, redoc_url=None, lifespan=lifespan)
    add_common_routes(app, metrics, connect_to=ingest_origins(settings))  # the page writes through the ingest API
    limits = RateLimits(settings)
    require_tokens(app, verifier, metrics, limits)
    # Each reader's view rate (φc), from every feed read this process answers.
    view_rates = DecayedRates.of(settings)

    @app.get("/v1/feed", response_model=FeedResponse, operation_id="own_feed", responses=error_responses(401))
    async def own_feed(reader: Reader, limit: Limit = 20, cursor: Cursor = None) -> Response:
        """The caller's home feed, newest first."""
        return await feed_page(reader, limit, cursor)

    @app.get("/v1/users/{user_id}/feed", response_model=FeedResponse, operation_id="user_feed",
             responses=error_responses(401, 403))
    async def feed(user_id: UserId, reader: Reader, limit: Limit = 20, cursor: Cursor = None) -> Response:
        """The home feed of `user_id`, who must be the caller (403 otherwise)."""
        return await feed_page(forbid_other(metrics, reader, user_id, "user"), limit, cursor)

    async def feed_page(user_id: int, limit: int, cursor: str | None) -> Response:
        started = time.perf_counter()
        try:
            before = parse_cursor(cursor)
        except InvalidCursor as exc:
            metrics.feed_reads.labels("422").inc()
            raise HTTPException(status_code=422, detail=str(exc)) from None
        now = clock_ms()
        requests = count_requests()
        feed = await home_feed(stores, settings, user_id, limit, before, now, sets, page_at,
                               may_pull=lambda: limits.allows("pulls", str(user_id)),
                               take_pull=pull_limit(limits, metrics, settings, user_id))
        if seen is not None:
            seen.seen(user_id, now)
        metrics.reader_view_rate.observe(view_rates.add(user_id, now))
        metrics.read_requests.observe(requests[0])
        metrics.read_latency.observe(time.perf_counter() - started)
        metrics.feed_reads.labels("200").inc()
        # Serialized here with orjson, not validated again through the response model (which documents it).
        page = feed.page
        return Response(orjson.dumps({
            "items": [{"post_id": p.post_id, "author_id": p.author_id, "created_at": p.created_at, "body": p.body,
                       "via": "timeline" if p.post_id in page.pulled else "inbox"} for p in page.items],
            "next_cursor": str(page.next_cursor) if page.next_cursor is not None else None,
            "regenerating": feed.regenerating,
        }), media_type="application/json")

    add_notification_routes(app, stores.notifications, metrics)
    if hub is not None:
        add_stream_routes(app, hub, stores, settings, sets, page_at, clock_ms, limits)
    return app


def add_stream_routes(app: FastAPI, hub: StreamHub, stores: Stores, settings: Settings, sets: SetsAt | None,
                      page_at: PageAt | None, clock_ms: Clock, limits: RateLimits) -> None:
    """The live feed (Server-Sent Events) and the page that shows it."""

    @app.get("/v1/feed/stream", response_class=StreamingResponse, operation_id="feed_stream",
             responses={200: {"content": {"text/event-stream": {}},
                              "description": "new feed items (`event: post`, id = post id) and delete notices "
                                             "(`event: delete`), with heartbeat comments"},
                        **error_responses(401)})
    async def feed_stream(
        caller: Streamer,
        # A plain string (empty: not resuming), so the spec does not offer a null that a header cannot carry.
        last_event_id: Annotated[str, Header(pattern=r"^[0-9]{0,19}$", description="resume after this post id")] = "",
    ) -> StreamingResponse:
        """The caller's new feed items as Server-Sent Events, from now (or after Last-Event-ID, at most
        FANOUT_STREAM_REPLAY_ITEMS of them) on, until the token expires (`event: reauth`)."""
        user_id = caller.user_id
        followees = set(await stores.graph.following(user_id, 10**9))
        try:  # before the catch-up read: nothing arriving meanwhile is lost
            conn = hub.connect(user_id, followees, caller.expires_ms)
        except TooManyStreams as exc:
            hub.metrics.streams_ended.labels("refused").inc()
            raise HTTPException(429, f"{exc}; close one or retry later", headers={"Retry-After": "10"}) from None
        try:
            catch_up = []
            if last_event_id:
                async def page(cursor: int | None) -> Any:
                    return (await home_feed(stores, settings, user_id, settings.stream_replay_items, cursor,
                                            clock_ms(), sets, page_at,
                                            may_pull=lambda: limits.allows("pulls", str(user_id)),
                                            take_pull=pull_limit(limits, hub.metrics, settings, user_id))).page

                catch_up = await catch_up_items(page, int(last_event_id))
        except BaseException:
            hub.disconnect(conn)
            raise

        async def frames() -> AsyncIterator[bytes]:
            try:
                async for frame in hub.frames(conn, catch_up):
                    yield frame
            finally:
                hub.disconnect(conn)

        return EventStream(frames(), settings.stream_send_timeout_s)

    add_page_routes(app, settings)


def build(settings: Settings) -> FastAPI:
    """The read service of one process: Cassandra, the caches in front of it, a listener that keeps the
    caches current from the worker's feed updates, and a producer for debounced UserSeen events (as the read
    service's Kafka user: it may write feed reads, never author events)."""
    res = open_resources(settings, storage=True, producer=True, principal="reader")
    cache = CachedPosts(res.stores.posts, res.metrics, post_cache_mb=settings.post_cache_mb,
                        post_ttl_s=settings.post_cache_ttl_s, head_size=settings.head_cache_size,
                        head_ttl_ms=settings.head_cache_ttl_ms)
    stores = dataclasses.replace(res.stores, posts=cache)

    listening = threading.Event()  # set by the update listener once it reads every partition
    pages = ReaderPages(res.stores.readers, res.metrics, ttl_ms=settings.reader_page_ttl_ms,
                        max_readers=settings.reader_page_cache_size, listening=listening.is_set,
                        keep=lambda page: not is_returning(page.activity, wall_ms(), settings))
    hub = StreamHub(cache, res.metrics, settings.stream_reorder_ms, settings.stream_heartbeat_s,
                    limits=StreamLimits(settings.stream_max_per_user, settings.stream_max_connections,
                                        settings.stream_queue_items))

    def apply(update: FeedUpdate) -> None:
        if isinstance(update, PostStored):
            cache.stored(update.post_id, update.author_id, Tier(update.tier), update.body)
        elif isinstance(update, PostRemoved):
            cache.removed(update.post_id, update.author_id)
        elif isinstance(update, PostDelivered):
            pages.delivered(update.post_id, update.user_ids)
        elif isinstance(update, FollowChanged):
            pages.changed(update.follower_id)
        elif isinstance(update, CelebritySetChanged):
            for user_id in update.user_ids:
                pages.changed(user_id)
        hub.apply(update)
        res.metrics.feed_updates.labels(update.TYPE).inc()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tune_gc(res.metrics, settings.gc_gen0_threshold)
        listener = UpdatesListener(settings, apply, asyncio.get_running_loop(), assigned=listening).start()
        try:
            yield
        finally:
            listener.stop()
            res.close()

    seen = SeenRecorder(res.producer, settings.seen_debounce_seconds * 1000)
    reader_sets = ReaderSetsCache(res.stores.readers, res.metrics, settings.reader_sets_ttl_s)
    return create_app(stores, settings, res.metrics, TokenVerifier(settings), seen, lifespan=lifespan,
                      sets=reader_sets.sets, page_at=pages.reader_page, hub=hub)


def app_from_env() -> FastAPI:
    """What each uvicorn worker process builds (`--workers`): its own connections and caches."""
    return build(Settings.load())
