"""The fan-out decision (fanout/core/policy.py): pure functions, checked with plain tables of cases."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fanout.core.model import Activity, AuthorStats, Edge
from fanout.core.policy import (
    CelebritySet,
    FanoutPlan,
    Tier,
    decide_follow,
    decide_follows,
    follower_bucket,
    is_celebrity_after,
    is_returning,
    lossy_audience,
    plan_fanout,
    plan_seen,
)
from fanout.settings import Settings

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


# --- follow changes --------------------------------------------------------------------------------------

RULES = Settings.load(env={}, celebrity_threshold=3, celebrity_demote_ratio=0.5)
T = 1_700_000_000_000
FOLLOWING, UNFOLLOWED = Edge(True, T), Edge(False, T)
KEEP, ADD, REMOVE = CelebritySet.KEEP, CelebritySet.ADD, CelebritySet.REMOVE


@pytest.mark.parametrize(
    ("edge", "stats", "following", "count", "celebrity", "celebrity_set", "backfill", "purge", "switch"),
    [
        # a first follow of a normal author: counted, backfilled
        (None, AuthorStats(0, False), True, 1, False, KEEP, True, False, False),
        # the follow that reaches the threshold: promoted, the follower pulls instead of a backfill
        (None, AuthorStats(2, False), True, 3, True, ADD, False, False, True),
        (UNFOLLOWED, AuthorStats(5, True), True, 6, True, ADD, False, False, False),
        # a repeated follow (newer, already following): nothing counted twice, backfilled again (idempotent)
        (FOLLOWING, AuthorStats(1, False), True, 1, False, KEEP, True, False, False),
        # an unfollow: uncounted, left the set, purged
        (FOLLOWING, AuthorStats(2, False), False, 1, False, REMOVE, False, True, False),
        # hysteresis: a celebrity keeps its tier down to 1.5 followers, and is demoted below it
        (FOLLOWING, AuthorStats(3, True), False, 2, True, REMOVE, False, True, False),
        (FOLLOWING, AuthorStats(2, True), False, 1, False, REMOVE, False, True, True),
        # an unfollow of a pair that was not following: nothing to purge, never below zero
        (None, AuthorStats(0, False), False, 0, False, REMOVE, False, False, False),
        (UNFOLLOWED, AuthorStats(2, False), False, 2, False, REMOVE, False, False, False),
    ],
)
def test_a_fresh_follow_change(edge: Edge | None, stats: AuthorStats, following: bool, count: int, celebrity: bool,
                               celebrity_set: CelebritySet, backfill: bool, purge: bool, switch: bool) -> None:
    d = decide_follow(edge, stats, following, T + 1, RULES)
    assert d.fresh
    assert (d.stats.follower_count, d.stats.is_celebrity) == (count, celebrity)
    assert (d.celebrity_set, d.backfill, d.purge, d.tier_switch) == (celebrity_set, backfill, purge, switch)


@pytest.mark.parametrize("event_time", [T, T - 1])
@pytest.mark.parametrize("following", [True, False])
def test_an_event_not_newer_than_the_edge_changes_nothing(event_time: int, following: bool) -> None:
    stats = AuthorStats(7, True, 42)
    d = decide_follow(FOLLOWING, stats, following, event_time, RULES)
    assert not d.fresh and d.stats == stats
    assert (d.celebrity_set, d.backfill, d.purge, d.tier_switch) == (KEEP, False, False, False)


def test_versions_increase_in_processing_order_and_never_fall_below_the_event_time() -> None:
    assert decide_follow(None, AuthorStats(0, False, 0), True, T, RULES).stats.version == T * 1000
    ahead = AuthorStats(1, False, T * 1000 + 500)  # decided later than this (older) event's time
    assert decide_follow(None, ahead, True, T, RULES).stats.version == T * 1000 + 501


@pytest.mark.parametrize("strategy", ["push", "pull"])
def test_the_baselines_never_promote_and_pull_never_backfills_or_purges(strategy: str) -> None:
    rules = Settings.load(env={}, celebrity_threshold=1, strategy=strategy)
    follow = decide_follow(None, AuthorStats(5, False), True, T, rules)
    unfollow = decide_follow(FOLLOWING, AuthorStats(5, False), False, T + 1, rules)
    assert not follow.stats.is_celebrity and not follow.tier_switch
    assert (follow.backfill, unfollow.purge) == ((True, True) if strategy == "push" else (False, False))


# --- readers' activity -----------------------------------------------------------------------------------

DAY = 86_400_000
ACTIVE = Settings.load(env={}, active_days=7)


@pytest.mark.parametrize(
    ("activity", "now", "strategy", "returning"),
    [
        (Activity(None, False), T, "hybrid", False),  # never seen: a new reader, pushed to
        (Activity(T - 7 * DAY, False), T, "hybrid", False),  # exactly at the limit
        (Activity(T - 7 * DAY - 1, False), T, "hybrid", True),
        (Activity(T, True), T, "hybrid", True),  # the rebuild is not done yet
        (Activity(T - 30 * DAY, True), T, "push", False),  # only the hybrid skips inactive readers
    ],
)
def test_who_is_a_returning_reader(activity: Activity, now: int, strategy: str, returning: bool) -> None:
    rules = Settings.load(env={}, active_days=7, strategy=strategy)
    assert is_returning(activity, now, rules) is returning


@pytest.mark.parametrize(
    ("activity", "event_time", "plan"),
    [
        (Activity(None, False), T, (T, False)),  # first read: edges get a last_seen
        (Activity(T - DAY + 1, False), T, None),  # refreshed within the day: nothing to do
        (Activity(T - DAY, False), T, (T, False)),
        (Activity(T - 10 * DAY, False), T, (T, True)),  # back after ten days: rebuild
        (Activity(T, True), T - 5, (T, True)),  # a rebuild that did not finish; last_seen never moves back
    ],
)
def test_what_a_feed_read_changes(activity: Activity, event_time: int, plan: tuple[int, bool] | None) -> None:
    got = plan_seen(activity, event_time, ACTIVE)
    assert (None if got is None else (got.seen, got.returning)) == plan


# --- runs of follow changes ---------------------------------------------------------------------------------


RUN = Settings.load(env={}, celebrity_threshold=3, celebrity_demote_ratio=0.5, strategy="hybrid")


@given(st.lists(st.tuples(st.integers(1, 4), st.booleans(), st.integers(1, 30)), min_size=1, max_size=25),
       st.integers(1, 6))
def test_a_run_decides_what_one_event_at_a_time_decides(changes: list[tuple[int, bool, int]], max_segment: int) -> None:
    edges: dict[int, Edge] = {}
    stats = AuthorStats(0, False, 0)
    expected = []
    for follower, following, t in changes:
        decision = decide_follow(edges.get(follower), stats, following, t, RUN)
        expected.append((follower, t, decision))
        if decision.fresh:
            edges[follower], stats = Edge(following, t), decision.stats
    segments = decide_follows({}, AuthorStats(0, False, 0), changes, RUN, max_segment)
    assert [(s.follower_id, s.event_time, s.decision) for seg in segments for s in seg.steps] == expected
    assert segments[-1].stats == stats
    committed: dict[int, Edge] = {}
    for seg in segments:
        assert 1 <= len(seg.steps) <= max_segment
        # a tier switch only ever opens a segment: what came before it is committed before it runs
        assert all(not s.decision.tier_switch for s in seg.steps[1:])
        committed.update(seg.edges)
    assert committed == edges


def test_a_run_is_cut_where_the_tier_switches() -> None:
    follows = [(f, True, 10 + f) for f in range(1, 5)]  # the third follower promotes the author
    unfollows = [(f, False, 20 + f) for f in range(1, 4)]  # ... and the third unfollow demotes it (1 < 1.5)
    segments = decide_follows({}, AuthorStats(0, False, 0), [*follows, *unfollows], RUN, 100)
    assert [[s.follower_id for s in seg.steps] for seg in segments] == [[1, 2], [3, 4, 1, 2], [3]]
    assert [seg.tier_switch.follower_id if seg.tier_switch else None for seg in segments] == [None, 3, 3]
    assert [(seg.stats.follower_count, seg.stats.is_celebrity) for seg in segments] == [(2, False), (2, True),
                                                                                       (1, False)]
    assert segments[1].edges == {3: Edge(True, 13), 4: Edge(True, 14), 1: Edge(False, 21), 2: Edge(False, 22)}


def test_stale_changes_in_a_run_commit_nothing() -> None:
    [segment] = decide_follows({7: Edge(True, 50)}, AuthorStats(1, False, 5), [(7, False, 40), (7, True, 50)], RUN, 9)
    assert segment.edges == {} and segment.stats == AuthorStats(1, False, 5)
    assert not any(s.decision.fresh for s in segment.steps)


def test_lossy_audience_is_off_without_a_limit_and_spares_readers_at_or_below_it() -> None:
    audience = list(range(1, 101))
    assert lossy_audience(audience, {5: 10_000}, 77, 10, 0) == (tuple(audience), 0)
    assert lossy_audience(audience, {5: 2_000, 6: 1_000}, 77, 10, 2_000) == (tuple(audience), 0)


def test_lossy_audience_draws_once_per_chunk_and_the_same_on_a_replay() -> None:
    audience = list(range(1, 1001))
    over = {f: 4_000 for f in audience if f % 2 == 0}  # every other reader follows 4,000: kept half the time
    kept_share = []
    for post in range(1, 401):
        kept, skipped = lossy_audience(audience, over, post, 100, 2_000)
        assert lossy_audience(audience, over, post, 100, 2_000) == (kept, skipped)  # a replay: the same rows
        assert skipped == len(audience) - len(kept) and set(audience) - set(kept) <= set(over)
        for start in range(0, 1000, 100):  # one draw per chunk: its over-followers all go or all stay
            chunk_over = {f for f in audience[start:start + 100] if f in over}
            assert len(chunk_over & set(kept)) in (0, len(chunk_over))
        kept_share.append(sum(1 for f in kept if f in over) / len(over))
    assert 0.45 <= sum(kept_share) / len(kept_share) <= 0.55  # min(2000/4000, 1) of the posts, on average
