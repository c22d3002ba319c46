"""The targets the notifier knows whole, so that a run of notices on one of them needs no read.

A run of notices on (owner, kind, target) starts from its stored state: which of the run's actors are members
already, the count, the open group (fanout/core/notifications.py). Reading that state is a Cassandra request
per run, and it is most of the notifier's work. Yet the notifier is the only writer of its targets: each
target's notices are keyed to one partition of the notifications topic, and one notifier consumes it, in
order. So once it has seen a target empty (a new post's first like), every later member of that target is
one it wrote itself, and it can keep the whole actor set, the count and the open group in memory, and decide
the next runs from them.

What is not kept, and is read from the store as before:
- a target first seen with actors already (after a restart or a rebalance, from before): its set is not
  known whole;
- a target past MAX_MEMBERS actors (a post with thousands of likes): it leaves memory;
- a run with an actor leaving a group other than the open one (an unlike of an older group): that group's
  row is in the store only;
- the owner's read mark: the read service moves it, so it is read every time (one request per 100 owners).

The memory is a hint that must never be wrong, so it is dropped where it could be: a target whose write
failed (it may or may not have landed), every target when partitions move (another notifier may have written
them meanwhile), the least recently used targets past `max_members` actors in all.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fanout.core.clock import wall_ms
from fanout.core.notifications import Group, Notice, TargetChange, TargetState

Subject = tuple[int, str, int]
MAX_MEMBERS = 1_000  # actors of one target kept in memory; past it, the target's runs read the store


@dataclass(slots=True)
class _Known:
    members: dict[int, int]  # every actor of the target -> the group it was counted in (0: none)
    total: int
    open_group: Group | None  # as stored: it may have expired since


class KnownTargets:
    def __init__(self, retention_ms: int, max_members: int, now_ms: Callable[[], int] = wall_ms) -> None:
        self.retention_ms = retention_ms
        self.max_members = max_members
        self.now_ms = now_ms
        self._known: OrderedDict[Subject, _Known] = OrderedDict()  # least recently used first
        self._members = 0  # actors held, over all targets, each target counting one more (one may have none)
        self.epoch = 0  # how many times everything was forgotten: a run that started before is not remembered

    def __len__(self) -> int:
        return len(self._known)

    def state(self, subject: Subject, run: Sequence[Notice]) -> TargetState | None:
        """The state `run` starts from, as the store would return it but for the owner's read mark (0 here);
        None when it must be read there."""
        known = self._known.get(subject)
        if known is None:
            return None
        g = known.open_group
        open_group = g if g is not None and g.first_at + self.retention_ms > self.now_ms() else None
        members = {n.actor: known.members[n.actor] for n in run if n.actor in known.members}
        groups: dict[int, Group] = {}
        for gid in set(members.values()) - {0}:
            if g is None or gid != g.group_id:
                return None  # a member of an older group: that group's row is the store's
            if open_group is not None:
                groups[gid] = open_group
        self._known.move_to_end(subject)
        return TargetState(members, known.total, open_group, groups, 0)

    def applied(self, subject: Subject, state: TargetState, change: TargetChange, epoch: int) -> None:
        """`change`, made from `state` (taken at `epoch`), is written: remember the target as it now stands,
        if it is known whole (it was, or it had no actor before this run)."""
        if epoch != self.epoch:
            return  # partitions moved since the run began: another notifier may have written the target
        known = self._known.get(subject)
        if known is None:
            if state.total != 0:
                return
            known = self._known[subject] = _Known({}, 0, state.open_group)
        else:
            self._members -= 1 + len(known.members)
        for actor in change.left:
            known.members.pop(actor, None)
        for actor, (gid, _) in change.joined.items():
            known.members[actor] = gid
        known.total = change.total
        if change.open_group == 0:
            known.open_group = None
        elif (opened := next((g for g in change.groups if g.group_id == change.open_group), None)) is not None:
            known.open_group = opened
        else:  # the run left the open group untouched
            known.open_group = state.open_group
        if len(known.members) > MAX_MEMBERS:
            del self._known[subject]
            return
        self._members += 1 + len(known.members)
        self._known.move_to_end(subject)
        while self._members > self.max_members and self._known:
            _, oldest = self._known.popitem(last=False)
            self._members -= 1 + len(oldest.members)

    def forget(self, subject: Subject) -> None:
        known = self._known.pop(subject, None)
        if known is not None:
            self._members -= 1 + len(known.members)

    def clear(self) -> None:
        self._known.clear()
        self._members = 0
        self.epoch += 1
