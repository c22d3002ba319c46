"""Node id leases (fanout/write/leases.py) on a fake store with a virtual clock: no servers."""

from __future__ import annotations

import pytest

from fanout.core.ids import NODE_BITS, SEQUENCE_BITS
from fanout.write.leases import LEASABLE, LeasedIds, NodeLease, NoLease


class FakeStore:
    """Compare-and-set rows with a TTL on the test's clock, like node_leases with LWTs."""

    def __init__(self) -> None:
        self.now = 0.0
        self.rows: dict[int, tuple[str, float]] = {}
        self.down = False

    def _live(self, node: int) -> tuple[str, float] | None:
        row = self.rows.get(node)
        return row if row and row[1] > self.now else None

    def acquire(self, node_id: int, owner: str, ttl_seconds: int) -> bool:
        self._check()
        if self._live(node_id):
            return False
        self.rows[node_id] = (owner, self.now + ttl_seconds)
        return True

    def renew(self, node_id: int, owner: str, ttl_seconds: int) -> bool:
        self._check()
        row = self._live(node_id)
        if not row or row[0] != owner:
            return False
        self.rows[node_id] = (owner, self.now + ttl_seconds)
        return True

    def release(self, node_id: int, owner: str) -> None:
        row = self._live(node_id)
        if row and row[0] == owner:
            del self.rows[node_id]

    def _check(self) -> None:
        if self.down:
            raise ConnectionError("cassandra down")


def lease(store: FakeStore, **kw: object) -> NodeLease:
    return NodeLease(store, 30, clock=lambda: store.now, **kw)  # type: ignore[arg-type]


def node_of(post_id: int) -> int:
    return (post_id >> SEQUENCE_BITS) & ((1 << NODE_BITS) - 1)


def test_every_process_gets_a_node_id_of_its_own_and_never_node_0() -> None:
    store = FakeStore()
    nodes = [lease(store).acquire() for _ in range(len(LEASABLE))]
    assert sorted(nodes) == list(LEASABLE)
    with pytest.raises(NoLease, match="every node id is leased"):
        lease(store).acquire()


def test_ids_carry_the_leased_node_and_stop_when_the_lease_lapses() -> None:
    store = FakeStore()
    held = lease(store)
    node = held.acquire()
    ids = LeasedIds(held)
    assert node_of(ids.next_id()) == node
    store.down = True
    store.now = 10
    held.renew_once()  # fails: logged, not raised
    assert node_of(ids.next_id()) == node  # still within two thirds of the TTL
    store.now = 20
    with pytest.raises(NoLease):
        ids.next_id()
    store.down = False
    held.renew_once()  # the row is still ours on the server (TTL 30): renewed, minting again
    assert node_of(ids.next_id()) == node


def test_a_lapsed_lease_taken_by_another_process_is_replaced_by_a_new_one() -> None:
    store = FakeStore()
    first = lease(store, pinned=5)
    first.acquire()
    store.now = 31  # expired on the server: another process takes node 5
    assert lease(store, pinned=5).acquire() == 5
    with pytest.raises(NoLease):
        _ = first.node_id
    first.pinned = None
    first.renew_once()
    assert first.node_id not in (0, 5)


def test_a_pinned_node_id_held_by_someone_else_is_refused_and_released_ones_are_free() -> None:
    store = FakeStore()
    holder = lease(store, pinned=7)
    holder.acquire()
    with pytest.raises(NoLease, match="node id 7 is leased"):
        lease(store, pinned=7).acquire()
    holder.close()
    assert lease(store, pinned=7).acquire() == 7
    with pytest.raises(ValueError):
        lease(store, pinned=0)
