"""Notification feeds, the pure part: which notices an event gives, and how a run of notices changes the
groups of one (owner, kind, target).

A notice is one actor joining or leaving a target of an owner: a like of the owner's post, a reply to it, a
mention of the owner in a post, a follow of the owner. Each (owner, kind, target) keeps the set of its actors
(a like is a set member, not an increment, so a replayed like is not a second one) and their exact number
(a post's like count). New actors join the target's open group; a group the owner has read, or one opened
longer than the window ago, is closed, and the next actor opens a new one. An actor who leaves (an unlike,
an unfollow) leaves the group it was counted in, so every group's count stays exact. An owner's own like of
their own post counts in the set but notifies nobody.

`apply` is a pure function of the stored state and the notices (in the order they were published), so
running it again on the same input gives the same writes: group ids come from the opening notice's time
and target, not from a clock or a counter.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from fanout.core.events import Event, Followed, Liked, Mentioned, Replied, Unfollowed, Unliked, Unmentioned
from fanout.core.ids import EPOCH_MS

KINDS = ("like", "reply", "mention", "follow")
VERBS = {"like": "liked your post", "reply": "replied to your post", "mention": "mentioned you in post",
         "follow": "followed you"}
GROUP_TARGET_BITS = 12  # a group id: ms since EPOCH_MS << 12 | 12 bits of the target's hash (< 2^53)


@dataclass(frozen=True, slots=True)
class Notice:
    """`actor` joins (`joins`) or leaves the target `target` of kind `kind` of the user `owner`, at `at` (ms)."""

    owner: int
    kind: str
    target: int
    actor: int
    joins: bool
    at: int

    @property
    def subject(self) -> tuple[int, str, int]:
        return self.owner, self.kind, self.target


@dataclass(frozen=True, slots=True)
class Group:
    """One notification of an owner's feed: `actors` actors did `kind` to `target`; `latest` names the
    newest few, newest first."""

    group_id: int
    kind: str
    target: int
    actors: int
    latest: tuple[int, ...]
    first_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class TargetState:
    """What is stored for one (owner, kind, target), as far as a run of notices needs it."""

    members: Mapping[int, int]  # actor -> the group it was counted in (0: none), for the run's actors
    total: int  # actors in the set
    open_group: Group | None  # the group new actors join while it is open (None: none, or expired)
    groups: Mapping[int, Group]  # the groups the run's leaving members were counted in, where they still exist
    read_up_to: int  # the owner has read every group up to this id


@dataclass(frozen=True, slots=True)
class TargetChange:
    """The writes of a run, applied together (atomically) by the store."""

    joined: Mapping[int, tuple[int, int]]  # actor -> (group id, at)
    left: tuple[int, ...]
    total: int
    open_group: int  # 0: none
    groups: tuple[Group, ...]  # rows written whole
    emptied: tuple[int, ...]  # groups whose last actor left: deleted

    @property
    def empty(self) -> bool:
        return not (self.joined or self.left)


@dataclass(frozen=True, slots=True)
class NotificationPage:
    read_up_to: int
    groups: tuple[Group, ...]  # newest first


@dataclass(frozen=True, slots=True)
class Grouping:
    window_ms: int  # a group opened longer ago than this takes no new actors
    latest: int  # actors named per group


def notices(event: Event) -> tuple[Notice, ...]:
    """The notices of an event of the notifications topic."""
    t = event.event_time
    if isinstance(event, Liked | Unliked):
        return (Notice(event.author_id, "like", event.post_id, event.user_id, isinstance(event, Liked), t),)
    if isinstance(event, Replied):
        return (Notice(event.author_id, "reply", event.parent_id, event.user_id, True, t),)
    if isinstance(event, Mentioned | Unmentioned):
        return tuple(Notice(m, "mention", event.post_id, event.user_id, isinstance(event, Mentioned), t)
                     for m in dict.fromkeys(event.mentioned_ids) if m != event.user_id)
    if isinstance(event, Followed | Unfollowed):
        return (Notice(event.followee_id, "follow", event.followee_id, event.follower_id,
                       isinstance(event, Followed), t),)
    return ()


def group_id_of(at: int, kind: str, target: int) -> int:
    """The id of a group opened at `at` (ms) for (kind, target): time-sortable, the same on a replay."""
    return (max(0, at - EPOCH_MS) << GROUP_TARGET_BITS) | (
        zlib.crc32(f"{kind}:{target}".encode()) & ((1 << GROUP_TARGET_BITS) - 1))


def apply(state: TargetState, run: Sequence[Notice], grouping: Grouping) -> TargetChange:
    """The writes that `run` (notices of one owner, kind and target, in order) makes to `state`."""
    members = dict(state.members)
    groups = dict(state.groups)
    open_id = state.open_group.group_id if state.open_group else 0
    if state.open_group:
        groups[open_id] = state.open_group
    joined: dict[int, tuple[int, int]] = {}
    left: list[int] = []
    touched: set[int] = set()
    total = state.total
    for n in run:
        if n.joins == (n.actor in members):
            continue  # already a member, or not one: a replay or a retry changes nothing
        total += 1 if n.joins else -1
        if not n.joins:
            gid = members.pop(n.actor)
            joined.pop(n.actor, None)
            left.append(n.actor)
            g = groups.get(gid)
            if g is not None:
                groups[gid] = replace(g, actors=g.actors - 1, latest=tuple(a for a in g.latest if a != n.actor))
                touched.add(gid)
            continue
        gid = 0
        if n.actor != n.owner:
            g = groups.get(open_id)
            if g is None or g.group_id <= state.read_up_to or n.at - g.first_at >= grouping.window_ms:
                gid = max(group_id_of(n.at, n.kind, n.target), state.read_up_to + 1, open_id + 1)
                g = Group(gid, n.kind, n.target, 0, (), n.at, n.at)
                open_id = gid
            gid = g.group_id
            groups[gid] = replace(g, actors=g.actors + 1, updated_at=max(g.updated_at, n.at),
                                  latest=(n.actor, *(a for a in g.latest if a != n.actor))[:grouping.latest])
            touched.add(gid)
        members[n.actor] = gid
        joined[n.actor] = (gid, n.at)
        if n.actor in left:
            left.remove(n.actor)
    emptied = tuple(sorted(gid for gid in touched if groups[gid].actors <= 0))
    if open_id in emptied:
        open_id = 0
    return TargetChange(joined, tuple(left), total, open_id,
                        tuple(groups[gid] for gid in sorted(touched) if gid not in emptied), emptied)


def describe(g: Group) -> str:
    """The group in words: "user 12, user 9 and 3 others liked your post 700"."""
    names = [f"user {a}" for a in g.latest]
    others = g.actors - len(names)
    if others > 0:
        who = f"{', '.join(names)} and {others} other{'s' if others > 1 else ''}"
    else:
        who = " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
    target = "" if g.kind == "follow" else f" {g.target}"
    return f"{who} {VERBS.get(g.kind, g.kind)}{target}"
