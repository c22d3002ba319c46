"""A clock the test moves by hand: `clock.now += 5` (seconds or milliseconds, as the code under test reads it)."""

from __future__ import annotations


class ManualClock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
