"""The fan-out decision (fanout/policy.py): pure functions, checked with plain tables of cases."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fanout.policy import FanoutPlan, Tier, follower_bucket, is_celebrity_after, plan_fanout

THRESHOLD = 10_000
RATIO = 0.8
DEMOTE_AT = math.ceil(THRESHOLD * RATIO)  # 8000: the smallest count a celebrity keeps its status at


@pytest.mark.parametrize(
    ("was_celebrity", "followers", "expected"),
    [
        # not a celebrity yet: promoted exactly at the threshold
        (False, 0, False),
        (False, DEMOTE_AT, False),
        (False, THRESHOLD - 1, False),
        (False, THRESHOLD, True),
        (False, THRESHOLD + 1, True),
        # already a celebrity: kept down to ceil(ratio x threshold), demoted below it
        (True, THRESHOLD + 1, True),
        (True, THRESHOLD, True),
        (True, THRESHOLD - 1, True),
        (True, DEMOTE_AT, True),
        (True, DEMOTE_AT - 1, False),
        (True, 0, False),
    ],
)
def test_celebrity_status_has_hysteresis(was_celebrity: bool, followers: int, expected: bool) -> None:
    assert is_celebrity_after(was_celebrity, followers, THRESHOLD, RATIO) is expected


@given(threshold=st.integers(1, 10**7), ratio=st.sampled_from([0.5, 0.75, 0.8, 0.9, 1.0]))
def test_hysteresis_band_edges_for_any_threshold(threshold: int, ratio: float) -> None:
    keep_down_to = math.ceil(threshold * ratio)
    assert is_celebrity_after(False, threshold, threshold, ratio)
    assert not is_celebrity_after(False, threshold - 1, threshold, ratio)
    assert is_celebrity_after(True, keep_down_to, threshold, ratio)
    assert not is_celebrity_after(True, keep_down_to - 1, threshold, ratio)


@pytest.mark.parametrize(
    ("is_celebrity", "followers", "chunk_size", "expected"),
    [
        # push: one chunk per started chunk_size followers; one chunk means push inline
        (False, 0, 1000, FanoutPlan(Tier.PUSH, 0)),
        (False, 1, 1000, FanoutPlan(Tier.PUSH, 1)),
        (False, 999, 1000, FanoutPlan(Tier.PUSH, 1)),
        (False, 1000, 1000, FanoutPlan(Tier.PUSH, 1)),
        (False, 1001, 1000, FanoutPlan(Tier.PUSH, 2)),
        (False, 2000, 1000, FanoutPlan(Tier.PUSH, 2)),
        (False, 2001, 1000, FanoutPlan(Tier.PUSH, 3)),
        (False, 5, 1, FanoutPlan(Tier.PUSH, 5)),
        # pull: nothing is pushed, however many followers
        (True, 0, 1000, FanoutPlan(Tier.PULL, 0)),
        (True, THRESHOLD, 1000, FanoutPlan(Tier.PULL, 0)),
        (True, 10**9, 1000, FanoutPlan(Tier.PULL, 0)),
    ],
)
def test_plan_tier_and_chunk_count(is_celebrity: bool, followers: int, chunk_size: int, expected: FanoutPlan) -> None:
    assert plan_fanout(is_celebrity, followers, chunk_size) == expected


@pytest.mark.parametrize(
    ("chunks", "inline"),
    [(0, False), (1, True), (2, False)],
)
def test_only_a_single_chunk_is_pushed_inline(chunks: int, inline: bool) -> None:
    assert FanoutPlan(Tier.PUSH, chunks).inline is inline


@pytest.mark.parametrize(
    ("is_celebrity", "followers", "stored_tier", "expected"),
    [
        # replay of a post stored as push, author promoted since: still pushed
        (True, 1500, "push", FanoutPlan(Tier.PUSH, 2)),
        (True, 0, "push", FanoutPlan(Tier.PUSH, 0)),
        # replay of a post stored as pull, author demoted since: still pulled
        (False, 1500, "pull", FanoutPlan(Tier.PULL, 0)),
        # the stored tier agrees with the current status: nothing changes
        (False, 1500, "push", FanoutPlan(Tier.PUSH, 2)),
        (True, 1500, "pull", FanoutPlan(Tier.PULL, 0)),
        # no stored tier (first delivery): current status decides
        (True, 1500, None, FanoutPlan(Tier.PULL, 0)),
        (False, 1500, None, FanoutPlan(Tier.PUSH, 2)),
    ],
)
def test_stored_tier_of_a_replay_wins_over_current_status(
    is_celebrity: bool, followers: int, stored_tier: str | None, expected: FanoutPlan
) -> None:
    assert plan_fanout(is_celebrity, followers, 1000, stored_tier) == expected


def test_unknown_stored_tier_is_rejected() -> None:
    with pytest.raises(ValueError):
        plan_fanout(False, 10, 1000, "fanout-on-sunday")


@pytest.mark.parametrize(
    ("strategy", "is_celebrity", "followers", "tier"),
    [
        ("hybrid", False, 50, Tier.PUSH),
        ("hybrid", True, 50_000, Tier.PULL),
        ("push", True, 50_000, Tier.PUSH),  # push-everything ignores celebrity status
        ("pull", False, 3, Tier.PULL),  # pull-everything indexes every post only
    ],
)
def test_strategy_decides_the_tier(strategy: str, is_celebrity: bool, followers: int, tier: Tier) -> None:
    assert plan_fanout(is_celebrity, followers, 1000, strategy=strategy).tier is tier


def test_a_stored_tier_wins_over_the_strategy() -> None:
    assert plan_fanout(False, 5, 1000, stored_tier="pull", strategy="push").tier is Tier.PULL


@pytest.mark.parametrize(("count", "label"), [(0, "1-9"), (9, "1-9"), (10, "10-99"), (999, "100-999"),
                                              (1_000, "1k-9k"), (9_999, "1k-9k"), (10_000, "10k+")])
def test_follower_buckets_are_powers_of_ten(count: int, label: str) -> None:
    assert follower_bucket(count) == label
