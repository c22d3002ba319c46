"""Cassandra's reconciliation rules in memory, for the in-memory adapter (fanout/adapters/memory.py).

Every cell carries a write timestamp (the event time where the CQL says USING TIMESTAMP, the clock
otherwise); the newest write wins (ties: the greater value, and a tombstone over a value); a row tombstone
shadows every cell written at or before it; INSERTs leave a row marker (UPDATEs do not); TTLs expire on
the clock; a collection element is a cell of its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

STATIC = ("static",)  # the clustering key under which a partition's static columns live
MARKER = "\0marker"  # the row marker an INSERT writes
DELETED = "\0deleted"  # a row tombstone
TOMBSTONE = object()  # a cell tombstone


def clock_us() -> int:
    return time.time_ns() // 1000


@dataclass(frozen=True)
class Cell:
    value: Any
    ts: int
    expires_us: int | None = None


class Table:
    """One table: partition -> clustering -> column -> Cell."""

    def __init__(self, now_us: Callable[[], int]) -> None:
        self.now_us = now_us
        self.parts: dict[Any, dict[Any, dict[Any, Cell]]] = {}

    def write(self, part: Any, clust: Any, values: dict[Any, Any], ts: int | None = None, ttl: int | None = None,
              insert: bool = False) -> None:
        now = self.now_us()
        cell_ts = now if ts is None else ts
        expires = now + ttl * 1_000_000 if ttl else None
        row = self.parts.setdefault(part, {}).setdefault(clust, {})
        for column, value in ({**values, MARKER: True} if insert else values).items():
            old = row.get(column)
            if old is None or cell_ts > old.ts or (cell_ts == old.ts and old.value is not TOMBSTONE
                                                   and _greater(value, old.value)):
                row[column] = Cell(value, cell_ts, expires)

    def delete(self, part: Any, clust: Any, ts: int | None = None) -> None:
        row = self.parts.setdefault(part, {}).setdefault(clust, {})
        cell_ts = self.now_us() if ts is None else ts
        if DELETED not in row or cell_ts > row[DELETED].ts:
            row[DELETED] = Cell(None, cell_ts)

    def remove_element(self, part: Any, clust: Any, column: Any, ts: int) -> None:
        """A cell tombstone (removing one element of a collection): shadows writes at or before `ts`."""
        row = self.parts.setdefault(part, {}).setdefault(clust, {})
        old = row.get(column)
        if old is None or ts >= old.ts:
            row[column] = Cell(TOMBSTONE, ts)

    def row(self, part: Any, clust: Any) -> dict[Any, Any] | None:
        """The live columns of one row; None if nothing of it is live."""
        return self._live(self.parts.get(part, {}).get(clust))

    def rows(self, part: Any, descending: bool = False) -> Iterator[tuple[Any, dict[Any, Any]]]:
        """Live rows of a partition in clustering order (static columns excluded)."""
        rows = self.parts.get(part, {})
        for clust in sorted((c for c in rows if c != STATIC), reverse=descending):
            live = self._live(rows[clust])
            if live is not None:
                yield clust, live

    def _live(self, row: dict[Any, Cell] | None) -> dict[Any, Any] | None:
        if not row:
            return None
        now = self.now_us()
        shadow = row[DELETED].ts if DELETED in row else -1
        live = {c: cell.value for c, cell in row.items()
                if c != DELETED and cell.value is not TOMBSTONE and cell.ts > shadow
                and (cell.expires_us is None or now < cell.expires_us)}
        if not live:
            return None
        live.pop(MARKER, None)
        return live


def _greater(a: Any, b: Any) -> bool:
    try:
        return bool(a > b)
    except TypeError:
        return False
