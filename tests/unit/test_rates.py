"""Decayed event rates (fanout/core/rates.py): what they estimate, how they forget, and their bound."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fanout.core.rates import DAY_MS, DecayedRates

HOUR = 3_600_000


@pytest.mark.parametrize("per_day", [0.5, 4.0, 96.0, 2_000.0])
def test_a_steady_rate_is_estimated_once_several_half_lives_have_passed(per_day: float) -> None:
    rates = DecayedRates(half_life_ms=6 * HOUR, max_keys=10)
    gap = DAY_MS / per_day
    t = 0.0
    estimate = 0.0
    while t < 10 * DAY_MS:
        estimate = rates.add(1, round(t))
        t += gap
    # Sampled just after an event, the estimate sits above the mean rate by at most one event's weight.
    assert per_day * 0.9 <= estimate <= per_day * 1.1 + rates.decay * DAY_MS


def test_a_rate_halves_with_each_half_life_without_events() -> None:
    rates = DecayedRates(half_life_ms=HOUR, max_keys=10)
    start = rates.add(7, 0)
    assert rates.rate(7, HOUR) == pytest.approx(start / 2)
    assert rates.rate(7, 3 * HOUR) == pytest.approx(start / 8)
    assert rates.rate(8, 3 * HOUR) == 0  # never seen


def test_a_late_event_counts_at_the_latest_time_seen() -> None:
    rates = DecayedRates(half_life_ms=HOUR, max_keys=10)
    rates.add(1, 10 * HOUR)
    after = rates.add(1, 0)  # from long before: no decay backwards, one more event now
    assert after == pytest.approx(2 * rates.decay * DAY_MS)


def test_the_key_updated_least_recently_is_forgotten_first() -> None:
    rates = DecayedRates(half_life_ms=HOUR, max_keys=2)
    rates.add(1, 0)
    rates.add(2, 0)
    rates.add(1, 1)
    rates.add(3, 2)
    assert len(rates) == 2 and rates.rate(2, 2) == 0 and rates.rate(1, 2) > 0


@given(st.lists(st.integers(0, 30 * DAY_MS), min_size=1, max_size=50))
def test_a_rate_never_exceeds_what_all_events_at_once_would_give(times: list[int]) -> None:
    rates = DecayedRates(half_life_ms=HOUR, max_keys=5)
    for at in times:
        estimate = rates.add(1, at)
        assert 0 < estimate <= len(times) * rates.decay * DAY_MS + 1e-9
