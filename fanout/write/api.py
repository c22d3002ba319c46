"""The ingest API: accepts posts (replies among them), deletes, likes, follows and unfollows over HTTP and
publishes them; marks the caller's notifications read.

Likes, replies, mentions (`@<user id>` in a post's body) and follows are also published on the notifications
topic, for the notifier: a reply or a mention is published there beside its post, a follow beside itself.

Every request carries a bearer token; its user is the author or follower (an id in the body or query
that disagrees is a 403), and only its author deletes a post (anyone else's delete is a 404, as for a post
that does not exist). 202 Accepted only after Kafka acknowledged
the event; 422 for invalid input; 503 when Kafka or Cassandra cannot take it (the client retries, with
the same Idempotency-Key for a POST: the retry gets the first response and publishes nothing new).

Browsers may call it from the feed page's origins (FANOUT_PAGE_ORIGINS, CORS), and from no other.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import FastAPI, Header, HTTPException, Path, Query, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from fanout.adapters.cassandra.session import TRANSIENT
from fanout.api.auth import TokenVerifier
from fanout.api.http import BodyLimit, Writer, add_common_routes, error_responses, forbid_other, require_tokens
from fanout.api.rate_limits import RateLimits
from fanout.core.clock import wall_ms
from fanout.core.codec import decode, encode
from fanout.core.events import (
    Event,
    Followed,
    Liked,
    Mentioned,
    PostCreated,
    PostDeleted,
    Replied,
    Unfollowed,
    Unliked,
    Unmentioned,
)
from fanout.core.ids import MAX_ID, MAX_USER_ID, millis_of
from fanout.core.model import Post
from fanout.core.ports import GraphStore, IdempotencyStore, NotificationStore, PostStore
from fanout.metrics import Metrics
from fanout.settings import Settings
from fanout.write.idempotency import KeyReused, once, request_hash
from fanout.write.leases import NoLease
from fanout.write.producer import EventProducer, PublishError


def _json_integer(value: object) -> object:
    """An integer as JSON Schema means it: 7 or 7.0, never `true` or "7" (which Pydantic's lax mode would take)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be an integer")
    return value


# Ids in request bodies; a whole float such as 7.0 is an integer too, 7.5 is not (Pydantic's int refuses it). The
# check comes last so that it runs first and the schema keeps the bounds as minimum and maximum.
Id = Annotated[int, Field(ge=1), BeforeValidator(_json_integer)]
UserId = Annotated[int, Field(ge=1, le=MAX_USER_ID), BeforeValidator(_json_integer)]


def _unicode_text(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (a lone surrogate is not)") from None
    return value


class NewPost(BaseModel):
    model_config = ConfigDict(extra="forbid")
    body: Annotated[str, Field(min_length=1, max_length=5000), AfterValidator(_unicode_text)]
    author_id: UserId | None = Field(None, description="the token's user; optional, a 403 if another")
    # No maximum in the schema: JSON clients read integers past 2^53 as floats, so a bound of 2^63 - 1 cannot
    # be stated exactly; an id beyond it is a post that does not exist (404), like any other.
    in_reply_to: Id | None = Field(None, description="the post this one replies to (a 404 if there is no "
                                           "such post)")


class ReadMark(BaseModel):
    model_config = ConfigDict(extra="forbid")
    up_to: Id = Field(description="a notification id: it and every older one are read")


MENTION = re.compile(r"(?<![\w@])@(\d{1,16})\b")
MAX_MENTIONS = 20


def mentioned_ids(body: str) -> tuple[int, ...]:
    """The users a post's body mentions as `@<user id>`, in order, each once, at most MAX_MENTIONS."""
    ids = dict.fromkeys(int(m) for m in MENTION.findall(body) if 1 <= int(m) <= MAX_USER_ID)
    return tuple(ids)[:MAX_MENTIONS]


class Follow(BaseModel):
    model_config = ConfigDict(extra="forbid")
    followee_id: UserId
    follower_id: UserId | None = Field(None, description="the token's user; optional, a 403 if another")


class Accepted(BaseModel):
    type: str  # the event published
    partition: int  # where Kafka stored it
    offset: int


class PostAccepted(Accepted):
    post_id: int  # the new post's id (time-sortable); pass it to DELETE /v1/posts/{post_id}


# The token's user, optional in the query: a 403 if it is another user.
MeInQuery = Annotated[int | None, Query(ge=1, le=MAX_USER_ID, description="the token's user; optional")]
IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", min_length=1, max_length=255, pattern=r"^[!-~]+$",
    description="retries with the same key within 24 h get the first response and publish nothing new")]


def create_app(producer: EventProducer, metrics: Metrics, verifier: TokenVerifier, posts: PostStore,
               graph: GraphStore, keys: IdempotencyStore, settings: Settings,
               notifications: NotificationStore) -> FastAPI:
    app = FastAPI(title="Fanout ingest API", version="1", docs_url=None, redoc_url=None)
    add_common_routes(app, metrics)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    # The feed page comes from the read API, another origin, and writes here as its signed-in user. Added last,
    # so outermost: a 413 or any error the page gets carries the headers too, and so can be shown. The token
    # travels in a header, never in a cookie, so the browser sends no credentials and none are allowed.
    app.add_middleware(CORSMiddleware, allow_origins=settings.feed_page_origins, allow_methods=["POST", "DELETE"],
                       allow_headers=["Authorization", "Content-Type", "Idempotency-Key"], max_age=600)
    require_tokens(app, verifier, metrics, RateLimits(settings))
    lease_ms = settings.publish_timeout_ms + 5_000

    @app.exception_handler(PublishError)
    async def kafka_unavailable(request: Request, exc: PublishError) -> JSONResponse:
        return JSONResponse(status_code=503, content={"error": f"{exc}; retry later"})

    async def storage_unavailable(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=503, content={"error": f"storage unavailable ({type(exc).__name__}); "
                                                               "retry later"})

    for error in TRANSIENT:
        app.add_exception_handler(error, storage_unavailable)

    async def publish(endpoint: str, event: Event, notices: tuple[Event, ...] = ()) -> Accepted:
        """Publish `event`, and `notices` on the notifications topic beside it; 202 once Kafka has all."""
        try:
            d, *_ = await asyncio.gather(producer.send_async(event), *(
                producer.send_async(n, settings.notifications_topic) for n in notices))
        except PublishError:
            metrics.ingest_requests.labels(endpoint, "503").inc()
            raise
        metrics.ingest_requests.labels(endpoint, "202").inc()
        metrics.events_published.labels(event.TYPE).inc()
        post_id = getattr(event, "post_id", None)
        if post_id is not None:
            return PostAccepted(type=event.TYPE, post_id=post_id, partition=d.partition, offset=d.offset)
        return Accepted(type=event.TYPE, partition=d.partition, offset=d.offset)

    async def publish_once(endpoint: str, user_id: int, key: str | None, content: dict[str, Any],
                           event: Event, notices: Callable[[Event], tuple[Event, ...]] = lambda e: ()) -> Response:
        """Publish `event` and its `notices(event)`; under an Idempotency-Key, only if no earlier request with
        the key did (a retry after a crash publishes the event the key holds, and the same notices)."""
        if key is None:
            return _json(await publish(endpoint, event, notices(event)))

        async def first(raw: bytes) -> bytes:
            stored = decode(raw)
            return (await publish(endpoint, stored, notices(stored))).model_dump_json().encode()

        try:
            body, replayed = await once(keys, user_id, key, request_hash(endpoint, content), encode(event), first,
                                        lease_ms)
        except KeyReused as exc:
            raise HTTPException(409, str(exc)) from None
        if replayed:
            metrics.idempotent_replays.labels(endpoint).inc()
        return Response(body, 202, media_type="application/json",
                        headers={"Idempotent-Replayed": "true"} if replayed else None)

    @app.post("/v1/posts", status_code=202, response_model=PostAccepted, operation_id="create_post",
              responses={**error_responses(400, 401, 403, 404, 409, 413, 503), 202: {"links": {"delete_it": {
                  "operationId": "delete_post", "parameters": {"post_id": "$response.body#/post_id"}}}}})
    async def create_post(post: NewPost, caller: Writer, key: IdempotencyKey = None) -> Response:
        """A new post by the caller; the answer carries its id."""
        author = forbid_other(metrics, caller, post.author_id, "author_id")
        parent = None
        if post.in_reply_to is not None:
            parent = await stored_post(post.in_reply_to) if post.in_reply_to <= MAX_ID else None
            if parent is None:
                metrics.ingest_requests.labels("posts", "404").inc()
                raise HTTPException(404, f"in_reply_to: there is no post {post.in_reply_to}")
        try:
            event = producer.new_post(author, post.body)
        except NoLease as exc:  # no valid node id lease: an id minted now might not be unique
            metrics.ingest_requests.labels("posts", "503").inc()
            raise HTTPException(status_code=503, detail=f"{exc}; retry later") from None

        def notices(e: Event) -> tuple[Event, ...]:
            assert isinstance(e, PostCreated)
            out: list[Event] = []
            if parent is not None and post.in_reply_to is not None:
                out.append(Replied(event_time=e.event_time, user_id=author, post_id=e.post_id,
                                   parent_id=post.in_reply_to, author_id=parent.author_id))
            if mentions := mentioned_ids(e.body):
                out.append(Mentioned(event_time=e.event_time, user_id=author, post_id=e.post_id,
                                     mentioned_ids=mentions))
            return tuple(out)

        content = {"author_id": author, "body": post.body, "in_reply_to": post.in_reply_to}
        return await publish_once("posts", author, key, content, event, notices)

    async def stored_post(post_id: int) -> Post | None:
        """The post as stored. One just published may still be on its way through the worker: for a post
        minted less than FANOUT_DELETE_WAIT_MS ago (or dated in the future), wait that long at most."""
        deadline = min(millis_of(post_id), wall_ms()) + settings.delete_wait_ms
        while True:
            stored = (await posts.posts([post_id])).get(post_id)
            if stored is not None or wall_ms() >= deadline:
                return stored
            await asyncio.sleep(0.05)

    @app.delete("/v1/posts/{post_id}", status_code=202, response_model=PostAccepted, operation_id="delete_post",
                responses=error_responses(401, 403, 404, 413, 503))
    async def delete_post(
        post_id: Annotated[int, Path(ge=1, le=MAX_ID)], caller: Writer,
        author_id: MeInQuery = None,
    ) -> Accepted:
        """Delete a post of the caller's; the users it mentioned lose that notification. A post that does not
        exist and another user's post get the same 404, so the answer tells nobody which post ids exist, and
        neither publishes anything."""
        author = forbid_other(metrics, caller, author_id, "author_id")
        stored = await stored_post(post_id)
        if stored is None or stored.author_id != author:
            metrics.ingest_requests.labels("posts", "404").inc()
            raise HTTPException(404, f"user {author} has no post {post_id}")
        deleted = PostDeleted(event_time=wall_ms(), post_id=post_id, author_id=author)
        # The users it mentioned lose that notice; a reply's notice stays (its group counts repliers, and the
        # author may have replied to that post again).
        mentions = mentioned_ids(stored.body)
        withdrawn = (Unmentioned(event_time=deleted.event_time, user_id=author, post_id=post_id,
                                 mentioned_ids=mentions),) if mentions else ()
        return await publish("posts", deleted, withdrawn)

    async def _follows(follower: int, followee: int) -> bool:
        edge = await graph.edge(followee, follower)
        return edge is not None and edge.following

    @app.post("/v1/follows", status_code=202, response_model=Accepted, operation_id="follow",
              responses={**error_responses(400, 401, 403, 409, 413, 503), 202: {"links": {"unfollow": {
                  "operationId": "unfollow", "parameters": {"followee_id": "$request.body#/followee_id"}}}}})
    async def follow(body: Follow, caller: Writer, key: IdempotencyKey = None) -> Response:
        """The caller follows `followee_id`; a 403 once they follow FANOUT_MAX_FOLLOWING accounts."""
        follower = _not_self(forbid_other(metrics, caller, body.follower_id, "follower_id"), body.followee_id)
        if await graph.following_count(follower) >= settings.max_following and not await _follows(
                follower, body.followee_id):
            metrics.ingest_requests.labels("follows", "403").inc()
            raise HTTPException(403, f"user {follower} follows {settings.max_following} accounts, the most "
                                     "allowed: unfollow one first")
        event = Followed(event_time=wall_ms(), follower_id=follower, followee_id=body.followee_id)
        return await publish_once("follows", follower, key, {"followee_id": body.followee_id}, event,
                                  lambda e: (e,))

    @app.delete("/v1/follows", status_code=202, response_model=Accepted, operation_id="unfollow",
                responses=error_responses(401, 403, 413, 503))
    async def unfollow(
        followee_id: Annotated[int, Query(ge=1, le=MAX_USER_ID)], caller: Writer,
        follower_id: MeInQuery = None,
    ) -> Accepted:
        """The caller stops following `followee_id`."""
        follower = _not_self(forbid_other(metrics, caller, follower_id, "follower_id"), followee_id)
        event = Unfollowed(event_time=wall_ms(), follower_id=follower, followee_id=followee_id)
        return await publish("follows", event, (event,))

    async def liked_post(post_id: int) -> Post:
        stored = await stored_post(post_id)
        if stored is None:
            metrics.ingest_requests.labels("likes", "404").inc()
            raise HTTPException(404, f"there is no post {post_id}")
        return stored

    @app.post("/v1/posts/{post_id}/likes", status_code=202, response_model=Accepted, operation_id="like",
              responses=error_responses(401, 404, 413, 503))
    async def like(post_id: Annotated[int, Path(ge=1, le=MAX_ID)], caller: Writer) -> Accepted:
        """The caller likes the post. A like is one per user and post: liking again changes nothing."""
        post = await liked_post(post_id)
        return await publish("likes", Liked(event_time=wall_ms(), user_id=caller, post_id=post_id,
                                            author_id=post.author_id))

    @app.delete("/v1/posts/{post_id}/likes", status_code=202, response_model=Accepted, operation_id="unlike",
                responses=error_responses(401, 404, 413, 503))
    async def unlike(post_id: Annotated[int, Path(ge=1, le=MAX_ID)], caller: Writer) -> Accepted:
        """The caller no longer likes the post (nothing changes if they did not)."""
        post = await liked_post(post_id)
        return await publish("likes", Unliked(event_time=wall_ms(), user_id=caller, post_id=post_id,
                                              author_id=post.author_id))

    @app.post("/v1/notifications/read", status_code=204, operation_id="mark_notifications_read",
              responses=error_responses(400, 401, 413, 503))
    async def mark_read(body: ReadMark, caller: Writer) -> Response:
        """The caller has read their notifications up to `up_to` (an id from GET /v1/notifications); a mark
        lower than one already made changes nothing."""
        await notifications.mark_read(caller, min(body.up_to, MAX_ID))
        metrics.ingest_requests.labels("notifications", "204").inc()
        return Response(status_code=204)

    return app


def _not_self(follower: int, followee: int) -> int:
    if follower == followee:
        raise HTTPException(422, "a user cannot follow themselves")
    return follower


def _json(accepted: Accepted) -> Response:
    return Response(accepted.model_dump_json(), 202, media_type="application/json")
