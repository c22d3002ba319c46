"""fanout/api/rate_limits.py: per-user windows that refuse with the seconds until there is room, and that a
refused request does not fill."""

from __future__ import annotations

import pytest

from fanout.api.rate_limits import RateLimited, RateLimits
from fanout.settings import Settings


def test_a_full_window_refuses_with_retry_after_and_others_are_not_affected() -> None:
    limits = RateLimits(Settings(rate_limit_writes="3/minute"))
    for _ in range(3):
        limits.take("writes", "7")
    with pytest.raises(RateLimited) as info:
        limits.take("writes", "7")
    assert 1 <= info.value.retry_after <= 60 and "retry in" in str(info.value)
    limits.take("writes", "8")  # per user
    limits.take("streams", "7")  # per kind


def test_every_window_must_have_room_and_a_refusal_counts_in_none() -> None:
    limits = RateLimits(Settings(rate_limit_writes="2/second;3/hour"))
    limits.take("writes", "7")
    limits.take("writes", "7")
    with pytest.raises(RateLimited) as info:
        limits.take("writes", "7")  # the second is full: refused, and counted in neither
    assert info.value.retry_after <= 1
    stats = limits.limiter.get_window_stats(limits.rules["writes"][1], "writes", "7")
    assert stats.remaining == 1  # of 3 per hour: the refused request took nothing


def test_an_empty_setting_is_no_limit() -> None:
    limits = RateLimits(Settings(rate_limit_unauthenticated=""))
    for _ in range(1000):
        limits.take("unauthenticated", "127.0.0.1")
