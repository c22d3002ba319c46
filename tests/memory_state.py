"""Every live cell of an in-memory adapter, without write timestamps: what two runs must agree on."""

from __future__ import annotations

from typing import Any

from fanout.adapters.memory import MemoryStorage
from fanout.adapters.memory_table import Table

TABLES = ("posts_t", "timelines", "followers", "followings", "inboxes")
# A random version written with every change of a reader's sets: two runs agree on the sets, not on it.
UNCOMPARED = {"sets_version"}


def table_state(table: Table) -> dict[Any, dict[Any, dict[str, Any]]]:
    state: dict[Any, dict[Any, dict[str, Any]]] = {}
    for part, rows in table.parts.items():
        for clust in rows:
            live = table.row(part, clust)
            if live is not None:
                state.setdefault(part, {})[clust] = {k: v for k, v in live.items() if k not in UNCOMPARED}
    return state


def memory_state(storage: MemoryStorage) -> dict[str, Any]:
    return {name: table_state(getattr(storage, name)) for name in TABLES}
