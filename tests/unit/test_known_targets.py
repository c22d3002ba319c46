"""fanout/write/known_targets.py: what the notifier keeps in memory stays within its bounds."""

from __future__ import annotations

from fanout.core.notifications import Grouping, Notice, TargetState, apply
from fanout.write import known_targets
from fanout.write.known_targets import KnownTargets

T = 1_800_000_000_000
GROUPING = Grouping(window_ms=3_600_000, latest=3)
EMPTY = TargetState({}, 0, None, {}, 0)


def write(known: KnownTargets, subject: tuple[int, str, int], *actors: int) -> None:
    owner, kind, target = subject
    run = [Notice(owner, kind, target, a, True, T + a) for a in actors]
    state = known.state(subject, run) or EMPTY
    known.applied(subject, state, apply(state, run, GROUPING), known.epoch)


def held(known: KnownTargets) -> int:
    return known._members


def test_the_least_recently_used_targets_leave_past_the_bound() -> None:
    known = KnownTargets(retention_ms=86_400_000, max_members=30, now_ms=lambda: T)
    for post in range(1, 21):
        write(known, (7, "like", post), 100 + post, 200 + post)  # 3 each: 2 actors and the target itself
    assert held(known) <= 30 and len(known) == 10
    assert known.state((7, "like", 20), []) is not None and known.state((7, "like", 1), []) is None


def test_a_target_past_its_own_bound_is_read_from_the_store_again() -> None:
    known = KnownTargets(retention_ms=86_400_000, max_members=10**6, now_ms=lambda: T)
    subject = (7, "like", 1)
    write(known, subject, *range(100, 100 + known_targets.MAX_MEMBERS))
    assert known.state(subject, []) is not None
    write(known, subject, 5000)
    assert known.state(subject, []) is None and held(known) == 0


def test_a_target_seen_with_actors_already_is_not_kept() -> None:
    known = KnownTargets(retention_ms=86_400_000, max_members=10**6, now_ms=lambda: T)
    subject = (7, "like", 1)
    before = TargetState({}, 3, None, {}, 0)
    run = [Notice(7, "like", 1, 9, True, T)]
    known.applied(subject, before, apply(before, run, GROUPING), known.epoch)
    assert known.state(subject, run) is None and len(known) == 0


def test_an_open_group_past_its_retention_is_not_offered() -> None:
    now = [T]
    known = KnownTargets(retention_ms=60_000, max_members=10**6, now_ms=lambda: now[0])
    subject = (7, "like", 1)
    write(known, subject, 11)
    state = known.state(subject, [])
    assert state is not None and state.open_group is not None
    now[0] += 61_000
    state = known.state(subject, [])
    assert state is not None and state.open_group is None and state.total == 1


def test_a_run_begun_before_everything_was_forgotten_is_not_remembered() -> None:
    known = KnownTargets(retention_ms=86_400_000, max_members=10**6, now_ms=lambda: T)
    subject = (7, "like", 1)
    run = [Notice(7, "like", 1, 9, True, T)]
    epoch = known.epoch
    known.clear()  # partitions moved while the run was being written
    known.applied(subject, EMPTY, apply(EMPTY, run, GROUPING), epoch)
    assert known.state(subject, run) is None and len(known) == 0
