"""Event rates per key (an author's posts, a reader's feed views) as exponentially decayed counters: one float
and one timestamp per key, updated in O(1) per event, with no window of past events kept.

With decay constant λ = ln 2 / half-life, each key keeps a score s, decayed to the time of each event and
then raised by one: s ← s·e^(−λ·Δt) + 1. Under a steady rate r (events per ms) the score settles at r/λ,
so s·λ estimates the rate, weighting recent events most. These are the φp (post rate) and φc (view rate) of
the per-pair push/pull rule (Feeding Frenzy, SIGMOD 2010), kept per process for the keys it sees.
"""

from __future__ import annotations

import math
from collections import OrderedDict

from fanout.settings import Settings

DAY_MS = 86_400_000


class DecayedRates:
    """Events per day of up to `max_keys` keys; the key updated least recently is forgotten first."""

    def __init__(self, half_life_ms: int, max_keys: int) -> None:
        self.decay = math.log(2) / max(1, half_life_ms)  # λ, per ms
        self.max_keys = max(1, max_keys)
        self._scores: OrderedDict[int, tuple[float, int]] = OrderedDict()  # key -> (score, at ms)

    @classmethod
    def of(cls, settings: Settings) -> DecayedRates:
        """With the half-life and key bound of the settings (FANOUT_RATE_HALF_LIFE_HOURS, FANOUT_RATE_KEYS)."""
        return cls(round(settings.rate_half_life_hours * 3_600_000), settings.rate_keys)

    def add(self, key: int, at_ms: int) -> float:
        """Count one event of `key` at `at_ms`; its rate after it. An event older than the key's last one
        counts at that last time (events may arrive out of order; the score never decays backwards)."""
        score, last = self._scores.pop(key, (0.0, at_ms))
        at = max(at_ms, last)
        score = score * math.exp(-self.decay * (at - last)) + 1.0
        self._scores[key] = (score, at)
        if len(self._scores) > self.max_keys:
            self._scores.popitem(last=False)
        return score * self.decay * DAY_MS

    def rate(self, key: int, at_ms: int) -> float:
        """The key's events per day as of `at_ms` (0 for a key not seen, or forgotten)."""
        score, last = self._scores.get(key, (0.0, at_ms))
        return score * math.exp(-self.decay * max(0, at_ms - last)) * self.decay * DAY_MS

    def __len__(self) -> int:
        return len(self._scores)
