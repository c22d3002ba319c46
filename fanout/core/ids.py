"""Time-sortable 64-bit post ids: the post id is also the sort key and the feed cursor.

Layout (Snowflake-like, always positive as a signed bigint):
    41 bits milliseconds since EPOCH_MS | 10 bits producer node | 12 bits sequence within the ms
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

EPOCH_MS = 1_577_836_800_000  # 2020-01-01T00:00:00Z
NODE_BITS = 10
SEQUENCE_BITS = 12
MAX_NODE = (1 << NODE_BITS) - 1
MAX_SEQUENCE = (1 << SEQUENCE_BITS) - 1
TIME_SHIFT = NODE_BITS + SEQUENCE_BITS
MAX_ID = (1 << 63) - 1
# User ids at the API edge (tokens, paths, bodies): the integers every JSON client reads exactly (I-JSON,
# RFC 7493); a bigger number in a JSON body is rounded by most parsers, so it could name another user.
MAX_USER_ID = (1 << 53) - 1


def millis_of(post_id: int) -> int:
    """The Unix time in milliseconds encoded in a post id."""
    return (post_id >> TIME_SHIFT) + EPOCH_MS


def smallest_id_at(unix_ms: int) -> int:
    """The smallest post id that any producer can generate at `unix_ms` (for time-bounded reads)."""
    return max(0, unix_ms - EPOCH_MS) << TIME_SHIFT


class IdSource(Protocol):
    def next_id(self) -> int: ...


class PostIdGenerator:
    """Thread-safe generator of strictly increasing post ids for one producer node."""

    def __init__(self, node: int = 0, clock_ms: Callable[[], int] | None = None) -> None:
        if not 0 <= node <= MAX_NODE:
            raise ValueError(f"node must be in 0..{MAX_NODE}, got {node}")
        self._node = node
        self._clock = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._lock = threading.Lock()
        self._last_ms = -1
        self._sequence = 0

    def next_id(self) -> int:
        with self._lock:
            now = max(self._clock(), self._last_ms)  # never go back in time, even if the clock does
            if now == self._last_ms:
                self._sequence = (self._sequence + 1) & MAX_SEQUENCE
                if self._sequence == 0:  # 4096 ids in one ms: borrow the next millisecond
                    now += 1
            else:
                self._sequence = 0
            self._last_ms = now
            return ((now - EPOCH_MS) << TIME_SHIFT) | (self._node << SEQUENCE_BITS) | self._sequence

