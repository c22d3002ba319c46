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


def plan_fanout(is_celebrity: bool, follower_count: int, chunk_size: int, stored_tier: str | None = None) -> FanoutPlan:
    """How one post is delivered. A tier already stored for the post (a replay) wins, so a post is
    never delivered under two tiers."""
    tier = Tier(stored_tier) if stored_tier else (Tier.PULL if is_celebrity else Tier.PUSH)
    if tier is Tier.PULL or follower_count <= 0:
        return FanoutPlan(tier, 0)
    return FanoutPlan(tier, max(1, math.ceil(follower_count / chunk_size)))
