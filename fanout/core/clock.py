"""The wall clock, in one place. Decisions take event times; only metrics and write stamps use this."""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], int]


def wall_ms() -> int:
    """Unix time in milliseconds."""
    return time.time_ns() // 1_000_000


def wall_us() -> int:
    """Unix time in microseconds: the resolution of Cassandra's write timestamps (the driver stamps writes
    with this clock), for stamps that must order against rows just written."""
    return time.time_ns() // 1_000
