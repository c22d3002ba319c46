"""Typed event models: what flows on the author events, notifications, chunk tasks and feed updates topics.

The schema files in schemas/events/ are the contract; these dataclasses mirror them, and fanout/core/codec.py
reads and writes them. Every author-scoped event exposes `key`: the author's id (the followee's for follow
events) as decimal ASCII bytes, the Kafka key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


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
class Liked(Event):
    """`user_id` likes `post_id`, a post of `author_id`'s (the ingest API read it). Notifications topic, keyed
    by the post: every like and unlike of a post on one partition, in order."""

    TYPE: ClassVar[str] = "Liked"
    user_id: int
    post_id: int
    author_id: int

    @property
    def key(self) -> bytes:
        return author_key(self.post_id)


@dataclass(frozen=True, slots=True)
class Unliked(Event):
    """`user_id` no longer likes `post_id`. Notifications topic, keyed by the post."""

    TYPE: ClassVar[str] = "Unliked"
    user_id: int
    post_id: int
    author_id: int

    @property
    def key(self) -> bytes:
        return author_key(self.post_id)


@dataclass(frozen=True, slots=True)
class Replied(Event):
    """`user_id` replied with post `post_id` to `parent_id`, a post of `author_id`'s. Notifications topic,
    keyed by the post replied to."""

    TYPE: ClassVar[str] = "Replied"
    user_id: int
    post_id: int
    parent_id: int
    author_id: int

    @property
    def key(self) -> bytes:
        return author_key(self.parent_id)


@dataclass(frozen=True, slots=True)
class Mentioned(Event):
    """`user_id`'s post `post_id` mentions these users. Notifications topic, keyed by the post."""

    TYPE: ClassVar[str] = "Mentioned"
    user_id: int
    post_id: int
    mentioned_ids: tuple[int, ...]

    @property
    def key(self) -> bytes:
        return author_key(self.post_id)


@dataclass(frozen=True, slots=True)
class Unmentioned(Event):
    """`user_id` deleted post `post_id`, which mentioned these users: their mention notices are withdrawn.
    Notifications topic, keyed by the post, as its `Mentioned` was, so the two arrive in order."""

    TYPE: ClassVar[str] = "Unmentioned"
    user_id: int
    post_id: int
    mentioned_ids: tuple[int, ...]

    @property
    def key(self) -> bytes:
        return author_key(self.post_id)


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
class SeenChunk(Event):
    """Internal task: one chunk of the followees of a feed read's reader. Marks the reader's edges to them
    seen and, for a returning reader (`rebuild`), copies their recent posts into the inbox. Keyed by the
    reader (one partition), and the last chunk of a read is sent once Kafka holds the others, so it runs
    after them: it ends a rebuild."""

    TYPE: ClassVar[str] = "SeenChunk"
    user_id: int
    author_ids: tuple[int, ...]
    seen: int  # the read (ms): the edges' last_seen, and the reader's when a rebuild ends
    rebuild: bool
    chunk: int
    chunks: int
    follows: int  # accounts the reader follows (copied onto the edges, for FANOUT_LOSSY_FOLLOWS)

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


@dataclass(frozen=True, slots=True)
class CelebritySetChanged(Event):
    """Feed update from the worker: after a tier switch of the author, these followers' celebrity sets gained
    it (`celebrity`) or lost it (and their inboxes were backfilled with its recent posts)."""

    TYPE: ClassVar[str] = "CelebritySetChanged"
    author_id: int
    user_ids: tuple[int, ...]
    celebrity: bool

    @property
    def key(self) -> bytes:
        return author_key(self.author_id)


@dataclass(frozen=True, slots=True)
class NotificationChanged(Event):
    """Feed update from the notifier: a notification group of `owner` as it now is (`actors` 0: gone)."""

    TYPE: ClassVar[str] = "NotificationChanged"
    owner: int
    group_id: int
    kind: str
    target: int
    actors: int
    latest: tuple[int, ...]
    first_at: int
    updated_at: int

    @property
    def key(self) -> bytes:
        return author_key(self.owner)


AuthorEvent = PostCreated | PostDeleted | Followed | Unfollowed
ChunkTask = InboxChunk | CelebrityChunk | DemotionChunk | InboxPurge | SeenChunk
NotificationEvent = Liked | Unliked | Replied | Mentioned | Unmentioned | Followed | Unfollowed
FeedUpdate = PostStored | PostRemoved | PostDelivered | FollowChanged | CelebritySetChanged | NotificationChanged


@dataclass(frozen=True, slots=True)
class FeedUpdates(Event):
    """Several feed updates in one message of the updates topic, applied in order (fanout/write/update_sender.py
    sends those of one partition together). `event_time` is the newest of theirs; the key is the first one's,
    and every one of them belongs on the partition the message is on."""

    TYPE: ClassVar[str] = "FeedUpdates"
    updates: tuple[FeedUpdate, ...]

    @property
    def key(self) -> bytes:
        return self.updates[0].key


def author_key(author_id: int) -> bytes:
    return str(author_id).encode()
