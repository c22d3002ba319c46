"""What reads need about their reader (schemas/cql: user_activity, celebrities_by_user, unfollowed_by_user)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from fanout.adapters.cassandra.batching import Loader, Writes
from fanout.adapters.cassandra.session import Cassandra, bigint_key, micros
from fanout.model import Activity, ReaderState

IN_KEYS = 100  # users per IN query of `activities`


class CassandraReaders:
    def __init__(self, db: Cassandra, writes: Writes, hide_ttl_seconds: int) -> None:
        self.db = db
        self.writes = writes  # the write methods' rows are coalesced with the other writes of the worker
        self.hide_ttl = hide_ttl_seconds
        p = db.prepare
        self._activity = p("SELECT last_seen, regenerating FROM {keyspace}.user_activity WHERE user_id = ?")
        self._activities = p("SELECT user_id, last_seen, regenerating FROM {keyspace}.user_activity "
                             "WHERE user_id IN ?")
        self._activity_loader: Loader[int, Activity] = Loader(db, self._fetch_activities, bigint_key, IN_KEYS)
        self._set_activity = p("UPDATE {keyspace}.user_activity SET last_seen = ?, regenerating = ? WHERE user_id = ?")
        self._hide = p("INSERT INTO {keyspace}.unfollowed_by_user (user_id, author_id) VALUES (?, ?) "
                       "USING TIMESTAMP ? AND TTL ?")
        self._unhide = p("DELETE FROM {keyspace}.unfollowed_by_user USING TIMESTAMP ? "
                         "WHERE user_id = ? AND author_id = ?")
        self._hidden = p("SELECT author_id FROM {keyspace}.unfollowed_by_user WHERE user_id = ?")
        self._add_celebrity = p("INSERT INTO {keyspace}.celebrities_by_user (user_id, celebrity_id) "
                                "VALUES (?, ?) USING TIMESTAMP ?")
        self._remove_celebrity = p("DELETE FROM {keyspace}.celebrities_by_user USING TIMESTAMP ? "
                                   "WHERE user_id = ? AND celebrity_id = ?")
        self._celebrities = p("SELECT celebrity_id FROM {keyspace}.celebrities_by_user WHERE user_id = ? LIMIT ?")

    async def activity(self, user_id: int) -> Activity:
        rows = await self.db.run(self._activity, (user_id,))
        if not rows:
            return Activity(None, False)
        return Activity(rows[0].last_seen, bool(rows[0].regenerating))

    async def activities(self, user_ids: Iterable[int]) -> dict[int, Activity]:
        """The follow handler's batch read: one IN query per replica group for all its followers."""
        ids = list(dict.fromkeys(user_ids))
        if not ids:
            return {}
        found = await self._activity_loader.load_many(ids)
        return {u: found.get(u) or Activity(None, False) for u in ids}

    async def _fetch_activities(self, user_ids: list[int]) -> dict[int, Activity]:
        rows = await self.db.run_routed(self._activities, (user_ids,), bigint_key(user_ids[0]))
        return {r.user_id: Activity(r.last_seen, bool(r.regenerating)) for r in rows}

    async def set_activity(self, user_id: int, activity: Activity) -> None:
        await self.writes.write([(self._set_activity, (activity.last_seen, activity.regenerating, user_id))])

    async def reader_state(self, user_id: int, max_celebrities: int) -> ReaderState:
        activity, celebrities, hidden = await asyncio.gather(
            self.activity(user_id), self.celebrities(user_id, max_celebrities), self.hidden_authors(user_id))
        return ReaderState(activity, celebrities, frozenset(hidden))

    async def celebrities(self, user_id: int, limit: int) -> list[int]:
        rows = await self.db.run(self._celebrities, (user_id, limit))
        return [r.celebrity_id for r in rows]

    async def add_celebrity(self, user_ids: Iterable[int], celebrity_id: int, version: int) -> int:
        return await self.writes.write((self._add_celebrity, (u, celebrity_id, version)) for u in user_ids)

    async def remove_celebrity(self, user_ids: Iterable[int], celebrity_id: int, version: int) -> int:
        return await self.writes.write((self._remove_celebrity, (version, u, celebrity_id)) for u in user_ids)

    async def hide_author(self, user_id: int, author_id: int, event_time: int) -> None:
        await self.set_hidden([(user_id, author_id, True, event_time)])

    async def unhide_author(self, user_id: int, author_id: int, event_time: int) -> None:
        await self.set_hidden([(user_id, author_id, False, event_time)])

    async def set_hidden(self, changes: Iterable[tuple[int, int, bool, int]]) -> None:
        await self.writes.write((self._hide, (user, author, micros(t), self.hide_ttl)) if hidden
                                else (self._unhide, (micros(t), user, author)) for user, author, hidden, t in changes)

    async def set_celebrities(self, changes: Iterable[tuple[int, int, bool, int]]) -> None:
        await self.writes.write(
            (self._add_celebrity, (user, celeb, version)) if added else (self._remove_celebrity, (version, user, celeb))
            for user, celeb, added, version in changes)

    async def hidden_authors(self, user_id: int) -> set[int]:
        return {r.author_id for r in await self.db.run(self._hidden, (user_id,))}
