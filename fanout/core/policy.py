"""The decisions of the pipeline, as pure functions over facts fetched beforehand (no Kafka, no Cassandra).

Handlers fetch, call one of these, and write what it returns. Every function here is cheap (O(1), but
`lossy_audience`, one pass over a post's audience) and tested with tables of cases.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

from fanout.core.model import Activity, AuthorStats, Edge, Post, Strategy, Tier
from fanout.settings import Settings

# Edges carry the follower's last_seen to a day's precision: enough for a 7-day activity rule, and it
# keeps the refresh of every edge of a reader to once a day.
EDGE_SEEN_REFRESH_MS = 86_400_000


@dataclass(frozen=True)
class FanoutPlan:
    tier: Tier
    chunks: int  # 0: nothing to push; 1: push inline; >1: split into chunk tasks


def is_celebrity_after(was_celebrity: bool, follower_count: int, threshold: int, demote_ratio: float) -> bool:
    """Celebrity status with hysteresis: promoted at `threshold` followers, demoted only below
    `threshold * demote_ratio`, so an author hovering at the threshold does not flap."""
    if was_celebrity:
        return follower_count >= threshold * demote_ratio
    return follower_count >= threshold


def plan_fanout(is_celebrity: bool, follower_count: int, chunk_size: int, stored_tier: Tier | None = None,
                strategy: Strategy = Strategy.HYBRID) -> FanoutPlan:
    """How one post is delivered. A tier already stored for the post (a replay) wins, so a post is
    never delivered under two tiers. The push and pull strategies deliver every post one way."""
    if stored_tier:
        tier = Tier(stored_tier)
    elif Strategy(strategy) is Strategy.HYBRID:
        tier = Tier.PULL if is_celebrity else Tier.PUSH
    else:
        tier = Tier(Strategy(strategy).value)
    if tier is Tier.PULL or follower_count <= 0:
        return FanoutPlan(tier, 0)
    return FanoutPlan(tier, max(1, math.ceil(follower_count / chunk_size)))


class CelebritySet(Enum):
    """What a follow change does to the follower's set of celebrities followed."""

    KEEP = "keep"
    ADD = "add"
    REMOVE = "remove"


@dataclass(frozen=True)
class FollowDecision:
    """The outcome of one follow or unfollow event.

    A stale or repeated event (not newer than the stored edge) is not `fresh`: only the follower-side
    rows are rewritten (last-writer-wins by event time, so that is harmless) and nothing else changes.
    """

    fresh: bool
    following: bool
    stats: AuthorStats  # the author's count, tier and version after this event (written only if fresh)
    celebrity_set: CelebritySet
    backfill: bool  # copy the author's recent posts into the new follower's inbox
    purge: bool  # remove the author's posts from the former follower's inbox (in the background)
    tier_switch: bool  # the author crossed the celebrity threshold with this event


def decide_follow(edge: Edge | None, stats: AuthorStats, following: bool, event_time: int,
                  settings: Settings) -> FollowDecision:
    """Whether a follow/unfollow is newer than the stored edge, and what it changes: the count, the tier
    (with hysteresis), the follower's celebrity set, a backfill or a purge."""
    fresh = edge is None or event_time > edge.changed_at
    if not fresh:
        return FollowDecision(False, following, stats, CelebritySet.KEEP, False, False, False)
    was_following = edge.following if edge else False
    count = stats.follower_count + int(following) - int(was_following)
    celebrity = settings.strategy is Strategy.HYBRID and is_celebrity_after(
        stats.is_celebrity, count, settings.celebrity_threshold, settings.celebrity_demote_ratio)
    # Every fresh change gets the next version of the author (never below the event's time, so the
    # values stay comparable with the event-time timestamps of other tables' rows).
    version = max(stats.version + 1, event_time * 1000)
    pushes = settings.strategy.pushes
    if following:
        celebrity_set = CelebritySet.ADD if celebrity else CelebritySet.KEEP
    else:
        celebrity_set = CelebritySet.REMOVE
    return FollowDecision(
        fresh=True, following=following, stats=AuthorStats(count, celebrity, version), celebrity_set=celebrity_set,
        backfill=following and not celebrity and pushes,
        purge=not following and was_following and pushes,
        tier_switch=celebrity != stats.is_celebrity,
    )


def may_delete(stored: Post | None, claimed_author: int) -> bool:
    """Only its author deletes a post, and only one that is stored. A post and its author's delete share
    the author's key, so the post is stored first; a delete of a post not stored is someone else's (or of
    no post) and writes nothing. (A dead-lettered post replayed after its author's delete comes back: the
    author deletes it again.)"""
    return stored is not None and stored.author_id == claimed_author


@dataclass(frozen=True)
class FollowStep:
    """One follow/unfollow event of a run, and what was decided for it."""

    follower_id: int
    event_time: int
    decision: FollowDecision


@dataclass(frozen=True)
class FollowSegment:
    """Consecutive decisions of one author written with one commit (`GraphStore.set_edges`)."""

    steps: tuple[FollowStep, ...]
    stats: AuthorStats  # the author's stats after the segment: what its commit writes
    edges: dict[int, Edge] = field(default_factory=dict)  # each follower's edge after it, if a step was fresh

    @property
    def tier_switch(self) -> FollowStep | None:
        """The step that switched the tier: only ever a segment's first."""
        first = self.steps[0]
        return first if first.decision.tier_switch else None


def decide_follows(edges: Mapping[int, Edge], stats: AuthorStats, changes: Sequence[tuple[int, bool, int]],
                   settings: Settings, max_segment: int) -> list[FollowSegment]:
    """`decide_follow` for one author's consecutive (follower, following, event_time) changes, in order,
    each on the edges and stats the previous ones left: the same decisions as one event at a time.

    Cut into segments, each committed before the next is written: a segment starts at every tier switch,
    so that every edge decided before the switch is stored when the switch lists the author's followers
    (as it is when events run one at a time), and after `max_segment` steps (a commit is one bounded
    batch). O(len(changes))."""
    edges = dict(edges)
    segments: list[FollowSegment] = []
    steps: list[FollowStep] = []
    changed: dict[int, Edge] = {}
    for follower, following, event_time in changes:
        decision = decide_follow(edges.get(follower), stats, following, event_time, settings)
        if steps and (decision.tier_switch or len(steps) >= max_segment):
            segments.append(FollowSegment(tuple(steps), stats, changed))
            steps, changed = [], {}
        steps.append(FollowStep(follower, event_time, decision))
        if decision.fresh:
            edges[follower] = changed[follower] = Edge(following, event_time)
            stats = decision.stats
    if steps:
        segments.append(FollowSegment(tuple(steps), stats, changed))
    return segments


def is_returning(activity: Activity, now_ms: int, settings: Settings) -> bool:
    """A reader back after FANOUT_ACTIVE_DAYS, or one whose inbox is still being rebuilt: their inbox
    missed pushes, so their feed is pulled from the accounts they follow until the rebuild is done.
    Only the hybrid skips inactive readers, so only the hybrid has returning readers."""
    if settings.strategy is not Strategy.HYBRID:
        return False
    if activity.regenerating:
        return True
    return activity.last_seen is not None and now_ms - activity.last_seen > settings.active_ms


@dataclass(frozen=True)
class SeenPlan:
    seen: int  # the last_seen to record (never moves back)
    returning: bool  # rebuild the reader's inbox


def plan_seen(activity: Activity, event_time: int, settings: Settings) -> SeenPlan | None:
    """What a feed read (UserSeen) changes: nothing if the reader's edges are fresh enough, else a new
    last_seen on every edge, and an inbox rebuild for a returning reader."""
    last = activity.last_seen
    if last is not None and event_time - last < EDGE_SEEN_REFRESH_MS and not activity.regenerating:
        return None
    return SeenPlan(max(event_time, last or 0), is_returning(activity, event_time, settings))


# How far ahead of the worker's clock a feed read's event time may be (the read service's host clock).
SEEN_CLOCK_SKEW_MS = 3_600_000


def seen_may_be_refreshing(activity: Activity, now_ms: int) -> bool:
    """Whether a feed read (UserSeen) of a reader with this activity may be writing a newer last_seen onto the
    reader's edges right now: only one that `plan_seen` would refresh. A reader never seen is one: the
    commit writes no last_seen (null: pushed until a read records one), and a read missed meanwhile would
    leave the edge null, pushed to for good however long the reader stays away, as the read's last_seen
    would not. A reader seen within the day (the edges' precision, EDGE_SEEN_REFRESH_MS) is not one: no read
    before `now_ms` (give or take SEEN_CLOCK_SKEW_MS) refreshes it."""
    last = activity.last_seen
    if last is None:
        return True
    return activity.regenerating or now_ms + SEEN_CLOCK_SKEW_MS - last >= EDGE_SEEN_REFRESH_MS


def follower_bucket(follower_count: int) -> str:
    """A label for metrics split by audience size (powers of ten)."""
    for bound, label in ((10, "1-9"), (100, "10-99"), (1_000, "100-999"), (10_000, "1k-9k")):
        if follower_count < bound:
            return label
    return "10k+"


def lossy_audience(audience: Sequence[int], follows: Mapping[int, int], post_id: int, chunk_size: int,
                   limit: int) -> tuple[tuple[int, ...], int]:
    """Bluesky's lossy timelines (2025): a reader who follows more than `limit` accounts gets each post with
    probability limit/follows, so that nobody's inbox is written hundreds of times a second. One draw per
    chunk of `chunk_size` followers, shared by every over-follower in it; the draw is a hash of the post and
    the chunk, so a replay pushes the same rows. `follows`: the follow counts of the over-followers among the
    audience (others need not be there). The audience kept, and how many were skipped."""
    if limit <= 0 or not follows:
        return tuple(audience), 0
    kept: list[int] = []
    for start in range(0, len(audience), chunk_size):
        draw = zlib.crc32(f"{post_id}:{start // chunk_size}".encode()) / 2**32
        kept.extend(f for f in audience[start:start + chunk_size] if follows.get(f, 0) <= limit
                    or draw < limit / follows[f])
    return tuple(kept), len(audience) - len(kept)
