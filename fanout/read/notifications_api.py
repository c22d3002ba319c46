"""GET /v1/notifications and GET /v1/notifications/unread: the caller's notification feed (the notifier
writes it, fanout/write/notifier.py; POST /v1/notifications/read on the ingest API marks it read)."""

from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, Query
from pydantic import BaseModel

from fanout.api.http import Reader, error_responses
from fanout.core.notifications import describe
from fanout.core.ports import NotificationStore
from fanout.metrics import Metrics

UNREAD_LIMIT = 100  # "99+" is all a badge shows


class Notification(BaseModel):
    id: int  # the group id: time-sortable; pass it as ?before= for older ones, or to POST /v1/notifications/read
    kind: str  # like, reply, mention or follow
    target: int  # the post liked, replied to or mentioned in; the caller's own id for a follow
    actors: int  # how many users did it (an unlike or unfollow removes its user)
    latest: list[int]  # the newest few of them, newest first
    first_at: int  # Unix ms of the first of them
    updated_at: int  # Unix ms of the latest
    read: bool
    text: str  # e.g. "user 12, user 9 and 3 others liked your post 700"


class NotificationPage(BaseModel):
    notifications: list[Notification]
    unread: int  # groups newer than the caller's read mark, counted up to 100
    read_up_to: int  # the caller's read mark: every group with an id up to it is read
    next_before: int | None  # pass as ?before= for the next (older) page; null at the end


class Unread(BaseModel):
    unread: int


Limit = Annotated[int, Query(ge=1, le=100, description="notifications per page")]
Before = Annotated[int | None, Query(ge=1, le=(1 << 63) - 1, description="next_before of the previous page")]


def add_notification_routes(app: FastAPI, store: NotificationStore, metrics: Metrics) -> None:
    @app.get("/v1/notifications", response_model=NotificationPage, operation_id="notifications",
             responses=error_responses(401))
    async def notifications(reader: Reader, limit: Limit = 20, before: Before = None) -> NotificationPage:
        """The caller's notifications, newest first, grouped by (kind, target)."""
        page = await store.notification_page(reader, before, limit)
        unread = await store.unread_count(reader, UNREAD_LIMIT)
        metrics.notification_reads.inc()
        items = [Notification(id=g.group_id, kind=g.kind, target=g.target, actors=g.actors, latest=list(g.latest),
                              first_at=g.first_at, updated_at=g.updated_at, read=g.group_id <= page.read_up_to,
                              text=describe(g)) for g in page.groups]
        return NotificationPage(notifications=items, unread=unread, read_up_to=page.read_up_to,
                                next_before=items[-1].id if len(items) == limit else None)

    @app.get("/v1/notifications/unread", response_model=Unread, operation_id="unread_notifications",
             responses=error_responses(401))
    async def unread(reader: Reader) -> Unread:
        """How many of the caller's notifications are unread (counted up to 100)."""
        return Unread(unread=await store.unread_count(reader, UNREAD_LIMIT))
