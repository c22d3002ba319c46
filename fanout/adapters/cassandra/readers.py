"""The reader's state, in static columns of their inbox partition (schemas/cql/003_reader_state.cql).

One request returns the reader's activity and the version of their sets with the head of the inbox: the
common feed read costs one Cassandra request (the sets, post bodies and celebrity timelines come from the
read service's caches, the sets re-read only when their version changed). The worker's writes here go
through the shared coalescer (batching.py) like every other write.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from fanout.adapters.cassandra.batching import Loader, Writes
from fanout.adapters.cassandra.session import Cassandra, bigint_key, micros
from fanout.core.model import Activity, ReaderPage, ReaderSets, ReaderState

PAGE = "post_id, last_seen, regenerating, sets_version, trimmed_below"
IN_KEYS = 100  # users per IN query of `activities`


class CassandraReaders:
    def __init__(self, db: Cassandra, writes: Writes, hide_ttl_seconds: int) -> None:
        self.db = db
        self.writes = writes  # the write methods' rows are coalesced with the other writes of the worker
        self.hide_ttl = hide_ttl_seconds
        p = db.prepare
        # Without a slice, the statics come back even from a partition with no (live) inbox row (as one row
        # with a null post id): a first page is always one request. Below a cursor, an empty slice carries
        # no statics, so they are read on their own.
        self._first = p(f"SELECT {PAGE} FROM {{keyspace}}.inbox WHERE user_id = ? LIMIT ?")
        self._page = p(f"SELECT {PAGE} FROM {{keyspace}}.inbox WHERE user_id = ? AND post_id < ? LIMIT ?")
        self._scalars = p(f"SELECT {PAGE} FROM {{keyspace}}.inbox WHERE user_id = ? LIMIT 1")
        self._sets = p("SELECT sets_version, celebrities, hidden FROM {keyspace}.inbox WHERE user_id = ? LIMIT 1")
        # DISTINCT: the statics of each partition once, not once per inbox row.
        self._activities = p("SELECT DISTINCT user_id, last_seen, regenerating, hidden FROM {keyspace}.inbox "
                             "WHERE user_id IN ?")
        self._activity_loader: Loader[int, Activity] = Loader(db, self._fetch_activities, bigint_key, IN_KEYS)
        self._set_activity = p("UPDATE {keyspace}.inbox SET last_seen = ?, regenerating = ? WHERE user_id = ?")
        # Each set change goes with a new version, in one single-partition batch (atomic). The element is
        # written at the decision's timestamp (event time, or the author's version), the version at the
        # clock's: a new version always wins, so a reader never keeps sets older than what is stored.
        self._new_version = p("UPDATE {keyspace}.inbox SET sets_version = now() WHERE user_id = ?")
        self._add_celebrity = p("UPDATE {keyspace}.inbox USING TIMESTAMP ? SET celebrities = celebrities + ? "
                                "WHERE user_id = ?")
        self._remove_celebrity = p("UPDATE {keyspace}.inbox USING TIMESTAMP ? SET celebrities = celebrities - ? "
                                   "WHERE user_id = ?")
        self._hide = p("UPDATE {keyspace}.inbox USING TIMESTAMP ? AND TTL ? SET hidden = hidden + ? WHERE user_id = ?")
        self._unhide = p("UPDATE {keyspace}.inbox USING TIMESTAMP ? SET hidden = hidden - ? WHERE user_id = ?")

    # --- reads -------------------------------------------------------------------------------------

    async def reader_page(self, user_id: int, before: int | None, limit: int) -> ReaderPage:
        if before is None:
            rows = await self.db.run(self._first, (user_id, limit))
        else:
            rows = await self.db.run(self._page, (user_id, before, limit))
            if not rows:  # an empty slice carries no statics
                rows = await self.db.run(self._scalars, (user_id,))
                return _page(rows[0], []) if rows else ReaderPage(Activity(None, False), None, [])
        if not rows:
            return ReaderPage(Activity(None, False), None, [])
        return _page(rows[0], [r.post_id for r in rows if r.post_id is not None])

    async def reader_sets(self, user_id: int) -> ReaderSets:
        rows = await self.db.run(self._sets, (user_id,))
        if not rows:
            return ReaderSets(None)
        r = rows[0]
        return ReaderSets(r.sets_version, sorted(r.celebrities or ()), frozenset(r.hidden or ()))

    async def reader_state(self, user_id: int) -> ReaderState:
        page, sets = await asyncio.gather(self.reader_page(user_id, None, 1), self.reader_sets(user_id))
        return ReaderState(page.activity, sets.celebrities, sets.hidden)

    async def activity(self, user_id: int) -> Activity:
        return (await self.activities([user_id]))[user_id]

    async def activities(self, user_ids: Iterable[int]) -> dict[int, Activity]:
        """The follow handler's batch read: one IN query per replica group for all its followers."""
        ids = list(dict.fromkeys(user_ids))
        if not ids:
            return {}
        found = await self._activity_loader.load_many(ids)
        return {u: found.get(u) or Activity(None, False) for u in ids}

    async def _fetch_activities(self, user_ids: list[int]) -> dict[int, Activity]:
        rows = await self.db.run_routed(self._activities, (user_ids,), bigint_key(user_ids[0]))
        return {r.user_id: Activity(r.last_seen, bool(r.regenerating), frozenset(r.hidden or ())) for r in rows}

    async def celebrities(self, user_id: int) -> list[int]:
        return (await self.reader_sets(user_id)).celebrities

    async def hidden_authors(self, user_id: int) -> set[int]:
        return set((await self.reader_sets(user_id)).hidden)

    # --- writes ------------------------------------------------------------------------------------

    async def set_activity(self, user_id: int, activity: Activity) -> None:
        await self.writes.write([(self._set_activity, (activity.last_seen, activity.regenerating, user_id))])

    async def add_celebrity(self, user_ids: Iterable[int], celebrity_id: int, version: int) -> int:
        return await self._set_changes((u, self._add_celebrity, (version, {celebrity_id}, u)) for u in user_ids)

    async def remove_celebrity(self, user_ids: Iterable[int], celebrity_id: int, version: int) -> int:
        return await self._set_changes((u, self._remove_celebrity, (version, {celebrity_id}, u)) for u in user_ids)

    async def hide_author(self, user_id: int, author_id: int, event_time: int) -> None:
        await self.set_hidden([(user_id, author_id, True, event_time)])

    async def unhide_author(self, user_id: int, author_id: int, event_time: int) -> None:
        await self.set_hidden([(user_id, author_id, False, event_time)])

    async def set_hidden(self, changes: Iterable[tuple[int, int, bool, int]]) -> None:
        await self._set_changes(
            (user, self._hide, (micros(t), self.hide_ttl, {author}, user)) if hidden
            else (user, self._unhide, (micros(t), {author}, user)) for user, author, hidden, t in changes)

    async def set_celebrities(self, changes: Iterable[tuple[int, int, bool, int]]) -> None:
        await self._set_changes(
            (user, self._add_celebrity if added else self._remove_celebrity, (version, {celeb}, user))
            for user, celeb, added, version in changes)

    async def _set_changes(self, changes: Iterable[tuple[int, Any, tuple[Any, ...]]]) -> int:
        """Each change with a new version of its reader's sets, atomically (coalesced with other writes)."""
        calls = [self.writes.write([(stmt, params), (self._new_version, (user,))], atomic=True)
                 for user, stmt, params in changes]
        await asyncio.gather(*calls)
        return len(calls)


def _page(row: Any, inbox: list[int]) -> ReaderPage:
    """The reader's statics (any row of the partition carries them) with their inbox head."""
    return ReaderPage(Activity(row.last_seen, bool(row.regenerating)), row.sets_version, inbox,
                      row.trimmed_below or 0)
