"""Which events may have been handled before, so that a handler pays for a replay check only when it can matter.

Kafka delivers at least once: after a crash or a rebalance, the events after the last committed offset come
again, and handlers check what they stored before (a post's stored tier). But only events that already
existed when this worker was assigned their partition can have been handled by anyone: an event appended
after that moment reached no other worker (the partition was ours) and none of our earlier runs. So at
every assignment the worker notes each partition's end offset (`FirstDeliveries.reset`); an event at or
after it is handled for the first time, anything before it may be a redelivery.

The runner says which it is per event through `may_be_redelivered` (a context variable: each group of a
batch of events runs in its own task, so each sees its own value). Outside a runner, and whenever the
worker does not know, it is True: every check is made, as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar

may_be_redelivered: ContextVar[bool] = ContextVar("may_be_redelivered", default=True)


class FirstDeliveries:
    """Per partition of one topic, the end offset at the worker's latest assignment."""

    def __init__(self) -> None:
        self._ends: dict[int, int] = {}

    def reset(self, ends: Mapping[int, int]) -> None:
        """A new assignment: these partitions' end offsets now (partitions not given: every event may be a
        redelivery)."""
        self._ends = dict(ends)

    def first(self, partition: int, offset: int) -> bool:
        """True when the event at `offset` was appended after this worker was assigned its partition."""
        end = self._ends.get(partition)
        return end is not None and offset >= end
