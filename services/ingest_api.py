"""`fanout ingest-api`: accepts posts, deletes, follows and unfollows over HTTP and publishes them.

202 Accepted only after Kafka acknowledged the event; 422 for invalid input; 503 when Kafka cannot
take it (the client retries). Nothing is dropped silently.
"""

from __future__ import annotations

from typing import Annotated

import uvicorn
from fastapi import FastAPI, HTTPException, Query
from pydantic import BaseModel, Field, model_validator

from fanout.bootstrap import open_resources
from fanout.clock import wall_ms
from fanout.events import Event, Followed, PostDeleted, Unfollowed
from fanout.http import add_common_routes
from fanout.ids import MAX_ID
from fanout.leases import NoLease
from fanout.metrics import Metrics
from fanout.producer import Delivered, EventProducer, PublishError
from fanout.settings import Settings

UserId = Annotated[int, Field(ge=1, le=MAX_ID)]


class NewPost(BaseModel):
    author_id: UserId
    body: str = Field(min_length=1, max_length=5000)


class Follow(BaseModel):
    follower_id: UserId
    followee_id: UserId

    @model_validator(mode="after")
    def not_self(self) -> Follow:
        if self.follower_id == self.followee_id:
            raise ValueError("a user cannot follow themselves")
        return self


class Accepted(BaseModel):
    type: str
    post_id: int | None = None
    partition: int
    offset: int


def create_app(producer: EventProducer, metrics: Metrics) -> FastAPI:
    app = FastAPI(title="Fanout ingest API", version="1")
    add_common_routes(app, metrics)

    async def publish(endpoint: str, event: Event) -> Delivered:
        try:
            delivered = await producer.send_async(event)
        except PublishError as exc:
            metrics.ingest_requests.labels(endpoint, "503").inc()
            raise HTTPException(status_code=503, detail=f"{exc}; retry later") from None
        metrics.ingest_requests.labels(endpoint, "202").inc()
        metrics.events_published.labels(event.TYPE).inc()
        return delivered

    @app.post("/v1/posts", status_code=202, response_model=Accepted)
    async def create_post(post: NewPost) -> Accepted:
        try:
            event = producer.new_post(post.author_id, post.body)
        except NoLease as exc:  # no valid node id lease: an id minted now might not be unique
            metrics.ingest_requests.labels("posts", "503").inc()
            raise HTTPException(status_code=503, detail=f"{exc}; retry later") from None
        d = await publish("posts", event)
        return Accepted(type=event.TYPE, post_id=event.post_id, partition=d.partition, offset=d.offset)

    @app.delete("/v1/posts/{post_id}", status_code=202, response_model=Accepted)
    async def delete_post(post_id: int, author_id: Annotated[int, Query(ge=1, le=MAX_ID)]) -> Accepted:
        if not 1 <= post_id <= MAX_ID:
            raise HTTPException(status_code=422, detail="post_id must be a positive 64-bit integer")
        event = PostDeleted(event_time=wall_ms(), post_id=post_id, author_id=author_id)
        d = await publish("posts", event)
        return Accepted(type=event.TYPE, post_id=post_id, partition=d.partition, offset=d.offset)

    @app.post("/v1/follows", status_code=202, response_model=Accepted)
    async def follow(body: Follow) -> Accepted:
        event = Followed(event_time=wall_ms(), follower_id=body.follower_id, followee_id=body.followee_id)
        d = await publish("follows", event)
        return Accepted(type=event.TYPE, partition=d.partition, offset=d.offset)

    @app.delete("/v1/follows", status_code=202, response_model=Accepted)
    async def unfollow(
        follower_id: Annotated[int, Query(ge=1, le=MAX_ID)], followee_id: Annotated[int, Query(ge=1, le=MAX_ID)]
    ) -> Accepted:
        event = Unfollowed(event_time=wall_ms(), follower_id=follower_id, followee_id=followee_id)
        d = await publish("follows", event)
        return Accepted(type=event.TYPE, partition=d.partition, offset=d.offset)

    return app


def run(settings: Settings) -> None:
    """The process: a producer minting post ids under a leased node id, and the app under uvicorn."""
    res = open_resources(settings, producer=True, lease=True)
    try:
        app = create_app(res.producer, res.metrics)
        uvicorn.run(app, host=settings.host, port=settings.ingest_api_port, log_level="warning")
    finally:
        res.close()
