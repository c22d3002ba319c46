"""The JSON codec of every event (orjson), validated against the schemas in schemas/events/.

The schema files are the contract; fanout/core/events.py's dataclasses mirror them. `decode` validates before it
builds a model, so anything that reaches the core has passed the schema; each topic's decoder also checks
that the event belongs on that topic (and, for author events, under its author's key).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import fastjsonschema
import orjson

from fanout.core.events import (
    AuthorEvent,
    CelebrityChunk,
    CelebritySetChanged,
    ChunkTask,
    DemotionChunk,
    Event,
    FeedUpdate,
    FeedUpdates,
    FollowChanged,
    Followed,
    InboxChunk,
    InboxPurge,
    InvalidEvent,
    Liked,
    Mentioned,
    NotificationChanged,
    NotificationEvent,
    PostCreated,
    PostDeleted,
    PostDelivered,
    PostRemoved,
    PostStored,
    Replied,
    SeenChunk,
    Unfollowed,
    Unliked,
    Unmentioned,
    UserSeen,
)
from fanout.core.ids import MAX_USER_ID, millis_of

E = TypeVar("E", bound=Event)
SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas" / "events"
SCHEMA_VERSION = 1
EVENT_TYPES: dict[str, type[Event]] = {
    cls.TYPE: cls
    for cls in (PostCreated, PostDeleted, Followed, Unfollowed, UserSeen, InboxChunk, CelebrityChunk, DemotionChunk,
                InboxPurge, SeenChunk, PostStored, PostRemoved, PostDelivered, FollowChanged, CelebritySetChanged,
                FeedUpdates, Liked, Unliked, Replied, Mentioned, Unmentioned, NotificationChanged)
}
FEED_UPDATE_TYPES = (PostStored, PostRemoved, PostDelivered, FollowChanged, CelebritySetChanged, NotificationChanged)


@cache
def validator(type_name: str) -> Any:
    schema = orjson.loads((SCHEMA_DIR / f"{type_name}.v{SCHEMA_VERSION}.json").read_bytes())
    return fastjsonschema.compile(schema)


def encode(event: Event) -> bytes:
    if isinstance(event, FeedUpdates):
        return encode_feed_updates([encode(u) for u in event.updates], event.event_time)
    doc: dict[str, Any] = {"type": event.TYPE, "version": SCHEMA_VERSION}
    for f in dataclasses.fields(event):
        doc[f.name] = getattr(event, f.name)
    return orjson.dumps(doc)


def encode_feed_updates(encoded: Sequence[bytes], event_time: int) -> bytes:
    """A FeedUpdates envelope around updates already encoded (`encode`), in this order: spliced, not
    encoded again, so that a sender can cut envelopes by size as it adds updates."""
    return b'{"type":"FeedUpdates","version":%d,"event_time":%d,"updates":[%b]}' % (
        SCHEMA_VERSION, event_time, b",".join(encoded))


def decode(raw: bytes | None, max_bytes: int | None = None) -> Event:
    """Bytes from Kafka to a validated model, or InvalidEvent with the reason."""
    if raw is None:
        raise InvalidEvent("empty", "message has no value")
    if max_bytes is not None and len(raw) > max_bytes:
        raise InvalidEvent("oversized", f"{len(raw)} bytes > limit {max_bytes}")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent("bad_json", str(exc)) from None
    return _from_doc(doc)


def _from_doc(doc: Any, enveloped: bool = False) -> Event:
    if not isinstance(doc, dict):
        raise InvalidEvent("schema", "event is not a JSON object")
    type_name = doc.get("type")
    cls = EVENT_TYPES.get(type_name) if isinstance(type_name, str) else None
    if cls is None:
        raise InvalidEvent("unknown_type", f"type {type_name!r} is not one of {sorted(EVENT_TYPES)}")
    if enveloped and not issubclass(cls, FEED_UPDATE_TYPES):
        raise InvalidEvent("unknown_type", f"a FeedUpdates envelope holds feed updates only, not {cls.TYPE}")
    try:
        validator(cls.TYPE)(doc)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise InvalidEvent("schema", f"{cls.TYPE}: {exc.message}") from None
    # JSON Schema's "integer" accepts 7.0; ids and times must be exact integers (a float key is a bug).
    for name, value in doc.items():
        values = value if isinstance(value, list) else [value]
        if name not in ("type", "body", "tier", "following", "celebrity", "rebuild", "updates", "kind") and any(
                type(v) is not int for v in values):
            raise InvalidEvent("schema", f"{cls.TYPE}: {name} must be an integer, got {value!r}"[:300])
    doc.pop("type")
    doc.pop("version")
    for name in ("follower_ids", "user_ids", "author_ids", "mentioned_ids", "latest"):
        if name in doc:
            doc[name] = tuple(doc[name])
    if "updates" in doc:
        doc["updates"] = tuple(_from_doc(item, enveloped=True) for item in doc["updates"])
    return cls(**doc)


def decode_author_event(raw: bytes | None, key: bytes | None, max_bytes: int) -> AuthorEvent:
    """Decode an event of the author topic and check it sits under its author's key."""
    event = decode(raw, max_bytes)
    if not isinstance(event, PostCreated | PostDeleted | Followed | Unfollowed):
        raise InvalidEvent("unknown_type", f"{event.TYPE} does not belong on the author event topic")
    if key != event.key:
        raise InvalidEvent("wrong_key", f"key {key!r} is not the author key {event.key!r}")
    return event


def decode_feed_read(raw: bytes | None, key: bytes | None, max_bytes: int) -> UserSeen:
    """Decode a message of the feed-reads topic (written by read services only) and check it sits under its
    reader's key."""
    event = decode(raw, max_bytes)
    if not isinstance(event, UserSeen):
        raise InvalidEvent("unknown_type", f"{event.TYPE} does not belong on the feed-reads topic")
    if key != event.key:
        raise InvalidEvent("wrong_key", f"key {key!r} is not the reader key {event.key!r}")
    return event


def decode_notification_event(raw: bytes | None, key: bytes | None, max_bytes: int) -> NotificationEvent:
    """Decode an event of the notifications topic and check it sits under its key (the post liked, replied
    to or mentioned from; the user followed)."""
    event = decode(raw, max_bytes)
    if not isinstance(event, NotificationEvent):
        raise InvalidEvent("unknown_type", f"{event.TYPE} does not belong on the notifications topic")
    if key != event.key:
        raise InvalidEvent("wrong_key", f"key {key!r} is not the event's key {event.key!r}")
    return event


USER_ID_FIELDS = ("author_id", "follower_id", "followee_id", "user_id")


def check_event(event: E, now_ms: int, max_future_ms: int) -> E:
    """What the schema lets through but the worker must not take from a client's event (the schema is the
    wire format, shared by every topic; this is the API's contract, enforced again where events are
    consumed, since anything holding the topic's credentials can write to it):
    - an event_time (or a new post's id time) more than `max_future_ms` ahead of now: last writer wins, so
      a future-dated follow could never be undone and a future post would top every feed for years;
    - a user id above MAX_USER_ID (2^53 - 1, what the APIs accept and JSON clients read exactly).
    Past times are kept: replays, imports and late events carry them, and an older write loses to any
    newer one. InvalidEvent (dead-lettered with the reason) otherwise."""
    if event.event_time > now_ms + max_future_ms:
        raise InvalidEvent("future_event_time", f"{event.TYPE}: event_time {event.event_time} is "
                                                f"{event.event_time - now_ms} ms ahead of the worker's clock")
    if isinstance(event, PostCreated) and millis_of(event.post_id) > now_ms + max_future_ms:
        raise InvalidEvent("future_event_time", f"PostCreated: post id {event.post_id} is dated "
                                                f"{millis_of(event.post_id) - now_ms} ms ahead of the worker's clock")
    for name in USER_ID_FIELDS:
        value = getattr(event, name, None)
        if value is not None and value > MAX_USER_ID:
            raise InvalidEvent("id_range", f"{event.TYPE}: {name} {value} is above {MAX_USER_ID}")
    return event


def decode_feed_updates(raw: bytes | None) -> tuple[FeedUpdate, ...]:
    """Decode a message of the feed updates topic (written by the worker, read by read services): one
    update, or a FeedUpdates envelope of several, in the order they apply."""
    event = decode(raw)
    if isinstance(event, FeedUpdates):
        return event.updates
    if not isinstance(event, FEED_UPDATE_TYPES):
        raise InvalidEvent("unknown_type", f"{event.TYPE} does not belong on the feed updates topic")
    return (event,)


def decode_chunk_task(raw: bytes | None) -> ChunkTask:
    """Decode a task of the chunks topic. The worker writes these itself, so the size limit for outside
    input does not apply: a chunk of FANOUT_CHUNK_SIZE ids may be larger."""
    event = decode(raw)
    if not isinstance(event, InboxChunk | CelebrityChunk | DemotionChunk | InboxPurge | SeenChunk):
        raise InvalidEvent("unknown_type", f"{event.TYPE} does not belong on the chunks topic")
    return event
