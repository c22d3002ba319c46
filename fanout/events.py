"""Typed event models and their JSON codec (orjson), validated against the schemas in schemas/events/.

The schema files are the contract; these dataclasses mirror them. `decode` validates before it builds a
model, so anything that reaches the core has passed the schema. Every author-scoped event exposes
`key`: the author's id (the followee's for follow events) as decimal ASCII bytes, the Kafka key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

import fastjsonschema
import orjson

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas" / "events"
SCHEMA_VERSION = 1


class InvalidEvent(ValueError):
    """An event that cannot be processed; `reason` is a short machine-readable cause."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Event:
    TYPE: ClassVar[str] = ""
    event_time: int

    @property
    def key(self) -> bytes:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class PostCreated(Event):
    TYPE: ClassVar[str] = "PostCreated"
    post_id: int
    author_id: int
    body: str

    @property
    def key(self) -> bytes:
        return author_key(self.author_id)


@dataclass(frozen=True, slots=True)
class PostDeleted(Event):
    TYPE: ClassVar[str] = "PostDeleted"
    post_id: int
    author_id: int

    @property
    def key(self) -> bytes:
        return author_key(self.author_id)


@dataclass(frozen=True, slots=True)
class Followed(Event):
    TYPE: ClassVar[str] = "Followed"
    follower_id: int
    followee_id: int

    @property
    def key(self) -> bytes:
        return author_key(self.followee_id)


@dataclass(frozen=True, slots=True)
class Unfollowed(Event):
    TYPE: ClassVar[str] = "Unfollowed"
    follower_id: int
    followee_id: int

    @property
    def key(self) -> bytes:
        return author_key(self.followee_id)


@dataclass(frozen=True, slots=True)
class InboxChunk(Event):
    """Internal task: push `post_id` into the inboxes of `follower_ids` (one slice of a big fan-out)."""

    TYPE: ClassVar[str] = "InboxChunk"
    post_id: int
    author_id: int
    follower_ids: tuple[int, ...]
    chunk: int
    chunks: int
    followers: int  # the author's follower count at planning, for lag by audience size

    @property
    def key(self) -> bytes:
        # Spread the chunks of one post over partitions, so several workers share a big fan-out.
        return f"{self.post_id}:{self.chunk}".encode()


@dataclass(frozen=True, slots=True)
class CelebrityChunk(Event):
    """Internal task: `author_id` became a celebrity; add it to these followers' celebrity sets."""

    TYPE: ClassVar[str] = "CelebrityChunk"
    author_id: int
    follower_ids: tuple[int, ...]
    author_version: int  # the author's version at the switch: the write timestamp of the set rows

    @property
    def key(self) -> bytes:
        return f"{self.author_id}:{self.follower_ids[0]}".encode()


@dataclass(frozen=True, slots=True)
class DemotionChunk(Event):
    """Internal task: `author_id` is no longer a celebrity; backfill its recent posts into these followers'
    inboxes, then drop it from their celebrity sets (in that order, so no post goes missing)."""

    TYPE: ClassVar[str] = "DemotionChunk"
    author_id: int
    follower_ids: tuple[int, ...]
    author_version: int  # the author's version at the switch: the write timestamp of the set rows
    until_post_id: int  # the author's newest post at the switch; later ones are pushed

    @property
    def key(self) -> bytes:
        return f"{self.author_id}:{self.follower_ids[0]}".encode()


@dataclass(frozen=True, slots=True)
class UserSeen(Event):
    """A user read their feed (debounced by the read service). Keyed by the reader."""

    TYPE: ClassVar[str] = "UserSeen"
    user_id: int

    @property
    def key(self) -> bytes:
        return author_key(self.user_id)


@dataclass(frozen=True, slots=True)
class InboxPurge(Event):
    """Internal task: remove `author_id`'s posts from `user_id`'s inbox after an unfollow."""

    TYPE: ClassVar[str] = "InboxPurge"
    user_id: int
    author_id: int
    as_of_us: int  # when the unfollow was processed (worker clock, µs): the purge's write timestamp

    @property
    def key(self) -> bytes:
        return author_key(self.user_id)


@dataclass(frozen=True, slots=True)
class PostStored(Event):
    """Feed update from the worker: a post is stored, with the tier decided for it."""

    TYPE: ClassVar[str] = "PostStored"
    post_id: int
    author_id: int
    tier: str
    body: str

    @property
    def key(self) -> bytes:
        return author_key(self.author_id)


@dataclass(frozen=True, slots=True)
class PostRemoved(Event):
    """Feed update from the worker: a delete claimed by `author_id` was applied."""

    TYPE: ClassVar[str] = "PostRemoved"
    post_id: int
    author_id: int

    @property
    def key(self) -> bytes:
        return author_key(self.author_id)


@dataclass(frozen=True, slots=True)
class PostDelivered(Event):
    """Feed update from the worker: a pushed post is in these users' inboxes now."""

    TYPE: ClassVar[str] = "PostDelivered"
    post_id: int
    author_id: int
    user_ids: tuple[int, ...]

    @property
    def key(self) -> bytes:
        return author_key(self.author_id)


@dataclass(frozen=True, slots=True)
class FollowChanged(Event):
    """Feed update from the worker: a follow or unfollow was applied."""

    TYPE: ClassVar[str] = "FollowChanged"
    follower_id: int
    followee_id: int
    following: bool

    @property
    def key(self) -> bytes:
        return author_key(self.followee_id)


AuthorEvent = PostCreated | PostDeleted | Followed | Unfollowed | UserSeen
ChunkTask = InboxChunk | CelebrityChunk | DemotionChunk | InboxPurge
FeedUpdate = PostStored | PostRemoved | PostDelivered | FollowChanged
EVENT_TYPES: dict[str, type[Event]] = {
    cls.TYPE: cls
    for cls in (PostCreated, PostDeleted, Followed, Unfollowed, UserSeen, InboxChunk, CelebrityChunk, DemotionChunk,
                InboxPurge, PostStored, PostRemoved, PostDelivered, FollowChanged)
}


def author_key(author_id: int) -> bytes:
    return str(author_id).encode()


@cache
def validator(type_name: str) -> Any:
    schema = orjson.loads((SCHEMA_DIR / f"{type_name}.v{SCHEMA_VERSION}.json").read_bytes())
    return fastjsonschema.compile(schema)


def encode(event: Event) -> bytes:
    doc: dict[str, Any] = {"type": event.TYPE, "version": SCHEMA_VERSION}
    for f in dataclasses.fields(event):
        doc[f.name] = getattr(event, f.name)
    return orjson.dumps(doc)


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
    if not isinstance(doc, dict):
        raise InvalidEvent("schema", "event is not a JSON object")
    type_name = doc.get("type")
    cls = EVENT_TYPES.get(type_name) if isinstance(type_name, str) else None
    if cls is None:
        raise InvalidEvent("unknown_type", f"type {type_name!r} is not one of {sorted(EVENT_TYPES)}")
    try:
        validator(cls.TYPE)(doc)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise InvalidEvent("schema", f"{cls.TYPE}: {exc.message}") from None
    # JSON Schema's "integer" accepts 7.0; ids and times must be exact integers (a float key is a bug).
    for name, value in doc.items():
        values = value if isinstance(value, list) else [value]
        if name not in ("type", "body", "tier", "following") and any(type(v) is not int for v in values):
            raise InvalidEvent("schema", f"{cls.TYPE}: {name} must be an integer, got {value!r}"[:300])
    doc.pop("type")
    doc.pop("version")
    for name in ("follower_ids", "user_ids"):
        if name in doc:
            doc[name] = tuple(doc[name])
    return cls(**doc)


def decode_author_event(raw: bytes | None, key: bytes | None, max_bytes: int) -> AuthorEvent:
    """Decode an event of the author topic and check it sits under its author's key."""
    event = decode(raw, max_bytes)
    if not isinstance(event, PostCreated | PostDeleted | Followed | Unfollowed | UserSeen):
        raise InvalidEvent("unknown_type", f"{event.TYPE} does not belong on the author event topic")
    if key != event.key:
        raise InvalidEvent("wrong_key", f"key {key!r} is not the author key {event.key!r}")
    return event


def decode_feed_update(raw: bytes | None) -> FeedUpdate:
    """Decode an update of the feed updates topic (written by the worker, read by read services)."""
    event = decode(raw)
    if not isinstance(event, PostStored | PostRemoved | PostDelivered | FollowChanged):
        raise InvalidEvent("unknown_type", f"{event.TYPE} does not belong on the feed updates topic")
    return event


def decode_chunk_task(raw: bytes | None) -> ChunkTask:
    """Decode a task of the chunks topic. The worker writes these itself, so the size limit for outside
    input does not apply: a chunk of FANOUT_CHUNK_SIZE ids may be larger."""
    event = decode(raw)
    if not isinstance(event, InboxChunk | CelebrityChunk | DemotionChunk | InboxPurge):
        raise InvalidEvent("unknown_type", f"{event.TYPE} does not belong on the chunks topic")
    return event
