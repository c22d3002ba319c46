"""The fan-out decision, as pure functions over facts fetched beforehand (no Kafka, no Cassandra)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum


class Tier(StrEnum):
    PUSH = "push"  # written into each active follower's inbox
    PULL = "pull"  # celebrity: indexed in the author timeline only, merged at read


@dataclass(frozen=True)
class FanoutPlan:
    tier: Tier
    chunks: int  # 0: nothing to push; 1: push inline; >1: split into chunk tasks

    @property
    def inline(self) -> bool:
        return self.chunks == 1


def is_celebrity_after(was_celebrity: bool, follower_count: int, threshold: int, demote_ratio: float) -> bool:
    """Celebrity status with hysteresis: promoted at `threshold` followers, demoted only below
    `threshold * demote_ratio`, so an author hovering at the threshold does not flap."""
    if was_celebrity:
        return follower_count >= threshold * demote_ratio
    return follower_count >= threshold


def plan_fanout(is_celebrity: bool, follower_count: int, chunk_size: int, stored_tier: str | None = None,
                strategy: str = "hybrid") -> FanoutPlan:
    """How one post is delivered. A tier already stored for the post (a replay) wins, so a post is
    never delivered under two tiers. The push and pull strategies deliver every post one way."""
    if stored_tier:
        tier = Tier(stored_tier)
    elif strategy == "hybrid":
        tier = Tier.PULL if is_celebrity else Tier.PUSH
    else:
        tier = Tier(strategy)
    if tier is Tier.PULL or follower_count <= 0:
        return FanoutPlan(tier, 0)
    return FanoutPlan(tier, max(1, math.ceil(follower_count / chunk_size)))


def follower_bucket(follower_count: int) -> str:
    """A label for metrics split by audience size (powers of ten)."""
    for bound, label in ((10, "1-9"), (100, "10-99"), (1_000, "100-999"), (10_000, "1k-9k")):
        if follower_count < bound:
            return label
    return "10k+"
