"""Notification feeds in memory, for unit tests: the same semantics as the Cassandra adapter (a group expires
its retention after it opened, a read mark only rises), checked by one contract suite on both."""

from __future__ import annotations

from collections.abc import Callable, Collection

from fanout.core.clock import wall_ms
from fanout.core.notifications import Group, NotificationPage, TargetChange, TargetState

Subject = tuple[int, str, int]


class MemoryNotifications:
    def __init__(self, retention_seconds: int, now_ms: Callable[[], int] = wall_ms) -> None:
        self.retention_ms = retention_seconds * 1000
        self.now_ms = now_ms
        self.members: dict[Subject, dict[int, int]] = {}  # -> actor -> group id
        self.totals: dict[Subject, int] = {}
        self.open: dict[Subject, int] = {}
        self.groups: dict[int, dict[int, Group]] = {}  # owner -> group id -> group
        self.marks: dict[int, int] = {}
        self.applied = 0  # `apply` calls, for tests that count the writes

    def _group(self, owner: int, group_id: int) -> Group | None:
        g = self.groups.get(owner, {}).get(group_id)
        return g if g is not None and g.first_at + self.retention_ms > self.now_ms() else None

    async def target_state(self, owner: int, kind: str, target: int, actors: Collection[int]) -> TargetState:
        subject = (owner, kind, target)
        stored = self.members.get(subject, {})
        members = {a: stored[a] for a in actors if a in stored}
        groups = {gid: g for gid in set(members.values()) if gid and (g := self._group(owner, gid))}
        return TargetState(members, self.totals.get(subject, 0), self._group(owner, self.open.get(subject, 0)),
                           groups, self.marks.get(owner, 0))

    async def apply(self, owner: int, kind: str, target: int, change: TargetChange) -> None:
        self.applied += 1
        subject = (owner, kind, target)
        members = self.members.setdefault(subject, {})
        for actor in change.left:
            members.pop(actor, None)
        for actor, (gid, _) in change.joined.items():
            members[actor] = gid
        self.totals[subject] = change.total
        self.open[subject] = change.open_group
        groups = self.groups.setdefault(owner, {})
        for g in change.groups:
            groups[g.group_id] = g
        for gid in change.emptied:
            groups.pop(gid, None)

    async def notification_page(self, owner: int, before: int | None, limit: int) -> NotificationPage:
        ids = sorted((gid for gid in self.groups.get(owner, {}) if before is None or gid < before), reverse=True)
        live = [g for gid in ids if (g := self._group(owner, gid)) is not None]
        return NotificationPage(self.marks.get(owner, 0), tuple(live[:limit]))

    async def unread_count(self, owner: int, limit: int) -> int:
        mark = self.marks.get(owner, 0)
        return min(limit, sum(1 for gid in self.groups.get(owner, {}) if gid > mark and self._group(owner, gid)))

    async def mark_read(self, owner: int, up_to: int) -> None:
        self.marks[owner] = max(self.marks.get(owner, 0), up_to)

    async def read_mark(self, owner: int) -> int:
        return self.marks.get(owner, 0)

    async def actors(self, owner: int, kind: str, target: int, actor: int) -> tuple[int, bool]:
        subject = (owner, kind, target)
        return self.totals.get(subject, 0), actor in self.members.get(subject, {})
