"""Every live cell of an in-memory adapter, without write timestamps: what two runs must agree on."""

from __future__ import annotations

from typing import Any

from fanout.adapters.memory import MemoryStorage, Table

TABLES = ("posts_t", "timelines", "followers", "followings", "activity_t", "hidden", "celebrity_sets", "inboxes")


def table_state(table: Table) -> dict[Any, dict[Any, dict[str, Any]]]:
    state: dict[Any, dict[Any, dict[str, Any]]] = {}
    for part, rows in table.parts.items():
        for clust in rows:
            live = table.row(part, clust)
            if live is not None:
                state.setdefault(part, {})[clust] = live
    return state


def memory_state(storage: MemoryStorage) -> dict[str, Any]:
    return {name: table_state(getattr(storage, name)) for name in TABLES}
