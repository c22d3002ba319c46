"""Bounded inboxes: the worker trims each inbox it pushes to back to FANOUT_INBOX_CAP rows, every
FANOUT_INBOX_TRIM_EVERY rows it pushes there.

An inbox has no single writer (its rows come from the partitions of every author followed), and a trim costs
a read of the inbox's ids, so no push pays for one. Each worker counts the rows it pushes per inbox and trims
an inbox once its count reaches FANOUT_INBOX_TRIM_EVERY. A count starts at a random value below that, so a
100,000-row fan-out spreads its trims over the pushes that follow, not all on the same post; and an inbox the
worker forgot (FANOUT_INBOX_TRIM_READERS, least recently pushed first) starts again the same way. Between two
trims by one worker, that worker pushes fewer than FANOUT_INBOX_TRIM_EVERY rows to the inbox plus one push
call's rows for it (a follow's backfill): an inbox holds at most the cap plus that, for each worker writing to
it.
"""

from __future__ import annotations

import asyncio
import random
from collections import OrderedDict
from collections.abc import Iterable

from fanout.core.ports import Stores
from fanout.metrics import Metrics

TRIMS_AT_ONCE = 32  # trims of one push call in flight together


class InboxTrimmer:
    def __init__(self, stores: Stores, metrics: Metrics, *, cap: int, every: int, readers: int,
                 rng: random.Random | None = None) -> None:
        self.stores = stores
        self.metrics = metrics
        self.cap = max(1, cap)
        self.every = max(1, every)
        self.readers = max(1, readers)
        self.rng = rng or random.Random()
        self._pushed: OrderedDict[int, int] = OrderedDict()  # inbox -> rows pushed since its last trim

    def due(self, user_ids: Iterable[int]) -> list[int]:
        """Count one row pushed per user id given (a user once per row); the inboxes due for a trim (each once,
        however many rows it got), whose counts start again at 0."""
        due: list[int] = []
        pushed = self._pushed
        for user in user_ids:
            count = pushed.pop(user, None)
            if count is None:
                count = self.rng.randrange(self.every)
            count += 1
            if count >= self.every:
                due.append(user)
                count = 0
            pushed[user] = count  # to the end: the most recently pushed
        while len(pushed) > self.readers:
            pushed.popitem(last=False)
        return list(dict.fromkeys(due))

    async def pushed(self, user_ids: Iterable[int]) -> None:
        """After rows were pushed to these inboxes (a user once per row): trim the inboxes due."""
        due = self.due(user_ids)
        trim = self.stores.inboxes.trim_inbox
        for i in range(0, len(due), TRIMS_AT_ONCE):
            trimmed = await asyncio.gather(*(trim(u, self.cap) for u in due[i:i + TRIMS_AT_ONCE]))
            self.metrics.inbox_trims.inc(len(trimmed))
            self.metrics.trimmed_rows.inc(sum(trimmed))
