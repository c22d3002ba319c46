"""Notification feeds (schemas/cql/005_notifications.cql): actor sets and groups, a run's writes in one logged
batch (atomic: its members, count, open group and groups land together or not at all).

The runs of one event-loop iteration (the targets of a batch of events, handled concurrently) share
requests: their owners' read marks are read together (`Loader`). Their writes go out at once, one logged batch
each, while fewer than WRITES_IN_FLIGHT batches are out: a batch takes Cassandra longer the more statements
it holds, and a lone run must not wait inside a big one. Runs that arrive while the window is full are
coalesced into the next batches, each run whole in one of them (atomic as before), up to MAX_STATEMENTS
statements: under a backlog, fewer and bigger requests cost the process less CPU per like."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from typing import Any

from cassandra.query import BatchStatement, BatchType

from fanout.adapters.cassandra.batching import Loader
from fanout.adapters.cassandra.session import Cassandra, bigint_key
from fanout.core.clock import wall_ms
from fanout.core.notifications import Group, NotificationPage, TargetChange, TargetState

GROUP = "group_id, kind, target, actors, latest, first_at, updated_at"
STATICS = "total, open_group, open_actors, open_latest, open_first_at, open_updated_at"
NOBODY = 0  # the actor of the row every run writes
MAX_STATEMENTS = 120  # statements per logged batch of several runs (one run may exceed it alone)
WRITES_IN_FLIGHT = 4  # logged batches out at once; runs arriving meanwhile wait and are coalesced
IN_OWNERS = 100  # owners per read of read marks
SUBJECT = "owner = ? AND kind = ? AND target = ?"


class CassandraNotifications:
    def __init__(self, db: Cassandra, retention_seconds: int, now_ms: Callable[[], int] = wall_ms) -> None:
        self.db = db
        self.retention_ms = retention_seconds * 1000
        self.now_ms = now_ms
        p = db.prepare
        # Actor 0 is in every run's writes, so it is always found, and the statics with it.
        self._members = p(f"SELECT actor, group_id, {STATICS} FROM {{keyspace}}.notification_members "
                          f"WHERE {SUBJECT} AND actor IN ?")
        self._statics = p(f"SELECT total FROM {{keyspace}}.notification_members WHERE {SUBJECT} LIMIT 1")
        self._mark = p("SELECT read_up_to FROM {keyspace}.notification_groups WHERE owner = ? LIMIT 1")
        self._marks = p("SELECT DISTINCT owner, read_up_to FROM {keyspace}.notification_groups WHERE owner IN ?")
        self._mark_loader: Loader[int, int] = Loader(db, self._fetch_marks, bigint_key, IN_OWNERS)
        self._pending: list[tuple[list[tuple[Any, tuple[Any, ...]]], asyncio.Future[None]]] = []
        self._writing = 0  # logged batches out
        self._groups = p(f"SELECT {GROUP} FROM {{keyspace}}.notification_groups WHERE owner = ? AND group_id IN ?")
        self._first = p(f"SELECT read_up_to, {GROUP} FROM {{keyspace}}.notification_groups WHERE owner = ? LIMIT ?")
        self._page = p(f"SELECT {GROUP} FROM {{keyspace}}.notification_groups WHERE owner = ? AND group_id < ? "
                       "LIMIT ?")
        self._unread = p("SELECT group_id FROM {keyspace}.notification_groups WHERE owner = ? AND group_id > ? "
                         "LIMIT ?")
        self._join = p("INSERT INTO {keyspace}.notification_members (owner, kind, target, actor, group_id, at) "
                       "VALUES (?, ?, ?, ?, ?, ?)")
        self._leave = p(f"DELETE FROM {{keyspace}}.notification_members WHERE {SUBJECT} AND actor = ?")
        self._set_total = p(f"UPDATE {{keyspace}}.notification_members SET total = ?, open_group = ? WHERE {SUBJECT}")
        self._set_open = p(f"UPDATE {{keyspace}}.notification_members SET total = ?, open_group = ?, open_actors = ?, "
                           f"open_latest = ?, open_first_at = ?, open_updated_at = ? WHERE {SUBJECT}")
        self._write_group = p(f"INSERT INTO {{keyspace}}.notification_groups (owner, {GROUP}) "
                              "VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?")
        self._drop_group = p("DELETE FROM {keyspace}.notification_groups WHERE owner = ? AND group_id = ?")
        self._set_mark = p("UPDATE {keyspace}.notification_groups USING TIMESTAMP ? SET read_up_to = ? "
                           "WHERE owner = ?")
        self._member = p(f"SELECT total, actor FROM {{keyspace}}.notification_members WHERE {SUBJECT} AND actor = ?")

    async def target_state(self, owner: int, kind: str, target: int, actors: Collection[int]) -> TargetState:
        subject = (owner, kind, target)
        rows, mark = await asyncio.gather(self.db.run(self._members, (*subject, [NOBODY, *actors])),
                                          self._mark_loader.load(owner))
        members = {r.actor: r.group_id or 0 for r in rows if r.actor != NOBODY}
        s = rows[0] if rows else None
        open_id = (s.open_group or 0) if s else 0
        open_group = None
        if s and open_id and s.open_first_at is not None and s.open_first_at + self.retention_ms > self.now_ms():
            open_group = Group(open_id, kind, target, s.open_actors, tuple(s.open_latest or ()), s.open_first_at,
                               s.open_updated_at)
        wanted = sorted({gid for gid in members.values() if gid and gid != open_id})
        groups = {g.group_id: g for g in map(_group, await self.db.run(self._groups, (owner, wanted)))} \
            if wanted else {}
        if open_group is not None and open_id in members.values():
            groups[open_id] = open_group
        return TargetState(members, (s.total or 0) if s else 0, open_group, groups, mark or 0)

    async def _fetch_marks(self, owners: list[int]) -> dict[int, int]:
        rows = await self.db.run_routed(self._marks, (owners,), bigint_key(owners[0]))
        return {r.owner: r.read_up_to or 0 for r in rows}

    async def apply(self, owner: int, kind: str, target: int, change: TargetChange) -> None:
        subject = (owner, kind, target)
        run: list[tuple[Any, tuple[Any, ...]]] = []
        for actor, (gid, at) in change.joined.items():
            run.append((self._join, (*subject, actor, gid, at)))
        for actor in change.left:
            run.append((self._leave, (*subject, actor)))
        run.append((self._join, (*subject, NOBODY, 0, 0)))
        opened = next((g for g in change.groups if g.group_id == change.open_group), None)
        if opened is None:
            run.append((self._set_total, (change.total, change.open_group, *subject)))
        else:
            run.append((self._set_open, (change.total, change.open_group, opened.actors, list(opened.latest),
                                         opened.first_at, opened.updated_at, *subject)))
        now = self.now_ms()
        for g in change.groups:
            ttl = (g.first_at + self.retention_ms - now) // 1000
            if ttl <= 0:  # a replay of notices older than the retention: the group is gone already
                continue
            run.append((self._write_group, (owner, g.group_id, g.kind, g.target, g.actors, list(g.latest),
                                            g.first_at, g.updated_at, ttl)))
        for gid in change.emptied:
            run.append((self._drop_group, (owner, gid)))
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((run, done))
        await done

    def _flush(self) -> None:
        """Send the waiting runs in as many batches as the window has room for, each run whole in one."""
        while self._pending and self._writing < WRITES_IN_FLIGHT:
            share = -(-len(self._pending) // (WRITES_IN_FLIGHT - self._writing))  # spread over the room left
            runs = [self._pending.pop(0)]
            size = len(runs[0][0])
            while (len(runs) < share and self._pending
                   and size + len(self._pending[0][0]) <= MAX_STATEMENTS):
                size += len(self._pending[0][0])
                runs.append(self._pending.pop(0))
            self._writing += 1
            asyncio.ensure_future(self._send(runs))

    async def _send(self, runs: list[tuple[list[tuple[Any, tuple[Any, ...]]], asyncio.Future[None]]]) -> None:
        batch = BatchStatement(batch_type=BatchType.LOGGED)
        for run, _ in runs:
            for statement, params in run:
                batch.add(statement, params)
        try:
            await self.db.run(batch)
        except Exception as error:
            for _, done in runs:
                if not done.done():
                    done.set_exception(error)
            return
        finally:
            self._writing -= 1
            self._flush()
        for _, done in runs:
            if not done.done():
                done.set_result(None)

    async def notification_page(self, owner: int, before: int | None, limit: int) -> NotificationPage:
        if before is None:
            rows = await self.db.run(self._first, (owner, limit))
            mark = (rows[0].read_up_to or 0) if rows else 0
            return NotificationPage(mark, tuple(_group(r) for r in rows if r.group_id is not None))
        rows, marks = await asyncio.gather(self.db.run(self._page, (owner, before, limit)),
                                           self.db.run(self._mark, (owner,)))
        return NotificationPage((marks[0].read_up_to or 0) if marks else 0, tuple(map(_group, rows)))

    async def unread_count(self, owner: int, limit: int) -> int:
        marks = await self.db.run(self._mark, (owner,))
        mark = (marks[0].read_up_to or 0) if marks else 0
        return len(await self.db.run(self._unread, (owner, mark, limit)))

    async def mark_read(self, owner: int, up_to: int) -> None:
        await self.db.run(self._set_mark, (up_to, up_to, owner))

    async def read_mark(self, owner: int) -> int:
        return await self._mark_loader.load(owner) or 0  # coalesced with the other owners of the iteration

    async def actors(self, owner: int, kind: str, target: int, actor: int) -> tuple[int, bool]:
        rows = await self.db.run(self._member, (owner, kind, target, actor))
        if rows:
            return rows[0].total or 0, rows[0].actor is not None and actor != NOBODY
        statics = await self.db.run(self._statics, (owner, kind, target))
        return ((statics[0].total or 0) if statics else 0), False


def _group(row: Any) -> Group:
    return Group(row.group_id, row.kind, row.target, row.actors, tuple(row.latest or ()), row.first_at,
                 row.updated_at)
