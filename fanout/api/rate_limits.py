"""Rate limits of one API process, per user (writes, stream connects) and per client address (requests that
fail authentication), with the `limits` library's moving windows in memory.

Limits are settings in that library's notation ("10/second;300/minute": every window must have room).
They hold per process: N replicas of a service let a user N times as much, which is still bounded; an
empty setting turns a limit off. Behind a proxy, the client address is the proxy's: give the proxy its
own limit per address, or run the services where they see clients' addresses.
"""

from __future__ import annotations

import math
import time
from typing import Literal

from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from fanout.settings import Settings

Kind = Literal["reads", "writes", "streams", "unauthenticated", "pulls"]


class RateLimited(Exception):
    def __init__(self, kind: Kind, retry_after: int) -> None:
        super().__init__(f"too many {kind.replace('unauthenticated', 'unauthenticated requests')} for now: "
                         f"retry in {retry_after} s")
        self.kind, self.retry_after = kind, retry_after


class RateLimits:
    def __init__(self, settings: Settings) -> None:
        self.limiter = MovingWindowRateLimiter(MemoryStorage())  # expired windows are dropped by the storage
        self.rules: dict[Kind, list[RateLimitItem]] = {
            "reads": _parse(settings.rate_limit_reads),
            "writes": _parse(settings.rate_limit_writes),
            "streams": _parse(settings.rate_limit_streams),
            "unauthenticated": _parse(settings.rate_limit_unauthenticated),
            "pulls": _parse(settings.rate_limit_pulls),
        }

    def take(self, kind: Kind, who: str) -> None:
        """Count one request of `who`; RateLimited (with the seconds until there is room) if a window of
        `kind` is full. A refused request counts in no window, so retrying after Retry-After succeeds."""
        rules = self.rules[kind]
        full = [rule for rule in rules if not self.limiter.test(rule, kind, who)]
        if full:
            reset = max(self.limiter.get_window_stats(rule, kind, who).reset_time for rule in full)
            raise RateLimited(kind, max(1, math.ceil(reset - time.time())))
        for rule in rules:
            self.limiter.hit(rule, kind, who)

    def allows(self, kind: Kind, who: str) -> bool:
        """`take`, as a yes or no (for work that has a cheaper way to answer)."""
        try:
            self.take(kind, who)
        except RateLimited:
            return False
        return True


def _parse(value: str) -> list[RateLimitItem]:
    return parse_many(value) if value.strip() else []
