"""The domain records every part of the pipeline shares. Plain data: no Kafka, no Cassandra, no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

from fanout.core.ids import millis_of


class Tier(StrEnum):
    """How one post is delivered; decided once per post and stored with it."""

    PUSH = "push"  # written into each active follower's inbox
    PULL = "pull"  # celebrity: indexed in the author timeline only, merged at read


class Strategy(StrEnum):
    """How the whole pipeline delivers posts. The hybrid is the product; push and pull deliver everything
    one way and exist to be measured against it (`fanout bench`)."""

    HYBRID = "hybrid"  # push normal authors, pull celebrities, skip inactive followers
    PUSH = "push"
    PULL = "pull"

    @property
    def pushes(self) -> bool:
        """Whether any inbox row is ever written (pull-only writes none)."""
        return self is not Strategy.PULL


class StoredPost(NamedTuple):
    """What the worker checks of a post id before storing a post under it: its author and decided tier."""

    author_id: int
    tier: Tier


class Post(NamedTuple):
    # A tuple of plain values, not a dataclass: the garbage collector stops tracking such a tuple, so the read
    # service's cache of a hundred thousand posts adds nothing to every full collection's work.
    post_id: int
    author_id: int
    body: str
    deleted: bool

    @property
    def created_at(self) -> int:
        """Unix milliseconds, from the time-sortable post id."""
        return millis_of(self.post_id)


@dataclass(frozen=True)
class AuthorStats:
    """What the fan-out decision needs to know about an author, kept beside its follower edges."""

    follower_count: int
    is_celebrity: bool
    # Goes up with every change the worker decides for this author, in processing order: the write
    # timestamp of celebrity-set rows, so those follow decision order rather than the events' clocks.
    version: int = 0


@dataclass(frozen=True)
class Edge:
    following: bool
    changed_at: int  # event time (ms) of the follow/unfollow that set it


@dataclass(frozen=True)
class EdgeChange:
    """One edge of a follow commit, and for a follow the follower's last feed read to copy onto it."""

    follower_id: int
    edge: Edge
    last_seen: int | None = None


@dataclass(frozen=True)
class Activity:
    last_seen: int | None  # event time (ms) of the last recorded feed read; None: never recorded
    regenerating: bool  # the worker is rebuilding the inbox of a returning user
    # The authors this reader hides (unfollowed, within the inbox TTL), read with the activity by the
    # follow handler (`ReaderStore.activities`) only; not part of the activity itself.
    hidden: frozenset[int] = field(default=frozenset(), compare=False)


@dataclass(frozen=True)
class FollowerPage:
    """One page of an author's followers, in follower id order."""

    active: list[int]  # followers to push to
    skipped_inactive: int  # followers left out because they have not read for FANOUT_ACTIVE_DAYS
    next_after: int | None  # the follower id to continue after; None at the end
    over_followers: Mapping[int, int] = field(default_factory=dict)  # active followers following many: follows


@dataclass(frozen=True)
class ReaderState:
    """Everything a feed read needs to know about its reader before it touches the inbox."""

    activity: Activity
    celebrities: list[int] = field(default_factory=list)  # every celebrity followed, merged at read
    hidden: frozenset[int] = frozenset()  # authors unfollowed whose rows may still sit in the inbox


@dataclass(frozen=True)
class ReaderSets:
    """The reader's celebrity set and hidden authors, and the version that changes with either."""

    version: object | None  # opaque; None: never written
    celebrities: list[int] = field(default_factory=list)
    hidden: frozenset[int] = frozenset()


@dataclass(frozen=True)
class ReaderPage:
    """The reader's activity, the version of their sets, and the head of their inbox: what one request
    returns. The sets themselves are read only when their version is not the one a reader has cached."""

    activity: Activity
    sets_version: object | None
    inbox: list[int]  # post ids below the cursor, newest first
    trimmed_below: int = 0  # the inbox holds every row pushed at or above this id (a trim's boundary)


@dataclass(frozen=True)
class KeyRecord:
    """What an Idempotency-Key holds: the first request's fingerprint and event, who is publishing it
    until when, and once published, the response every retry gets."""

    request_hash: str  # endpoint + the request's resolved content: the same key with another request is a 409
    event: bytes  # the encoded event, so a retry republishes this one (same post id), never a new one
    claimed_until: int  # ms: a request is publishing it until then; 0 when nobody is
    response: bytes | None = None  # the first response, once the event was published
