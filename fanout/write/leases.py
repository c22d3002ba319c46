"""Node ids for post ids, leased so that no two processes mint ids with the same node bits at once.

A post id is (ms, node, sequence) (fanout/core/ids.py): two processes with the same node id can mint the
same id in the same millisecond and overwrite each other's post. Every process that mints ids (the
ingest API, `fanout publish post`) leases a node id first: an insert-if-absent with a TTL (a Cassandra
lightweight transaction, fanout/adapters/cassandra/leases.py), renewed in the background by its holder
only (update-if-owner). A lease the holder stops renewing expires and frees the number.

The holder counts its lease valid for two thirds of the TTL from the start of its last successful
acquire or renew, and refuses to mint ids after that (`NoLease`; the ingest API answers 503). The
server keeps the row for the whole TTL, so a new holder starts minting at least a third of the TTL
(10 s by default) after the old one stopped: ids stay distinct even if the two hosts' clocks differ
by less than that.

Node 0 is never leased: tools that publish from one process of their own (benchmarks, tests, the demo)
use it.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Protocol

from fanout.core.ids import MAX_NODE, PostIdGenerator

log = logging.getLogger(__name__)

LEASABLE = range(1, MAX_NODE + 1)
VALID_SHARE = 2 / 3  # of the TTL, counted from the start of the last successful acquire or renew
RENEW_SHARE = 1 / 4  # renew this often: two renewals may fail before the lease lapses


class NoLease(RuntimeError):
    """This process holds no valid node id lease, so it must not mint post ids."""


class LeaseStore(Protocol):
    """Where leases live; each call is atomic (a compare-and-set)."""

    def acquire(self, node_id: int, owner: str, ttl_seconds: int) -> bool:
        """Take `node_id` for `owner` if nobody holds it; True if taken."""
        ...

    def renew(self, node_id: int, owner: str, ttl_seconds: int) -> bool:
        """Extend `owner`'s lease of `node_id` by the TTL; False if `owner` does not hold it (any more)."""
        ...

    def release(self, node_id: int, owner: str) -> None:
        """Give `node_id` back if `owner` holds it."""
        ...


class NodeLease:
    """One process's node id: acquired once, renewed by a background thread, released on close."""

    def __init__(self, store: LeaseStore, ttl_seconds: int = 30, pinned: int | None = None,
                 clock: Callable[[], float] = time.monotonic, owner: str | None = None) -> None:
        if pinned is not None and pinned not in LEASABLE:
            raise ValueError(f"a leased node id is in {LEASABLE.start}..{LEASABLE.stop - 1}, got {pinned}")
        self.store = store
        self.ttl = ttl_seconds
        self.pinned = pinned
        self.clock = clock
        self.owner = owner or f"{uuid.uuid4().hex[:12]}"
        self._node: int | None = None
        self._valid_until = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    @property
    def node_id(self) -> int:
        """The node id held now; NoLease if none is valid."""
        with self._lock:
            if self._node is None or self.clock() >= self._valid_until:
                raise NoLease("no valid node id lease (Cassandra unreachable for a while?); not minting post ids")
            return self._node

    def acquire(self) -> int:
        """Lease a free node id (the pinned one, or any from a random start); raises NoLease if none is free."""
        candidates: Sequence[int] = [self.pinned] if self.pinned is not None else _rotated(LEASABLE)
        for node in candidates:
            started = self.clock()
            if self.store.acquire(node, self.owner, self.ttl):
                self._held(node, started)
                log.info("leased node id %d (owner %s, ttl %ds)", node, self.owner, self.ttl)
                return node
        what = f"node id {self.pinned} is" if self.pinned is not None else "every node id is"
        raise NoLease(f"{what} leased by another live process")

    def renew_once(self) -> None:
        """Renew the lease, or lease another node id if this one was lost; errors are logged, not raised."""
        node = self._node
        try:
            started = self.clock()
            if node is not None and self.store.renew(node, self.owner, self.ttl):
                self._held(node, started)
                return
            log.warning("lost the lease of node id %s; leasing again", node)
            with self._lock:
                self._node = None
            self.acquire()
        except Exception as exc:  # Cassandra unreachable: try again next round; minting stops at expiry
            log.warning("could not renew the node id lease: %s: %s", type(exc).__name__, exc)

    def start(self) -> NodeLease:
        """Acquire, then renew every RENEW_SHARE of the TTL in a daemon thread."""
        self.acquire()
        self._renewer = threading.Thread(target=self._renew_loop, name="node-lease", daemon=True)
        self._renewer.start()
        return self

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl * RENEW_SHARE):
            self.renew_once()

    def close(self) -> None:
        """Stop renewing and give the node id back (best effort: it expires anyway)."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=5)
        node, self._node = self._node, None
        if node is not None:
            try:
                self.store.release(node, self.owner)
            except Exception as exc:
                log.warning("could not release node id %d (it expires in %ds): %s", node, self.ttl, exc)

    def _held(self, node: int, started: float) -> None:
        with self._lock:
            self._node = node
            self._valid_until = started + self.ttl * VALID_SHARE


def _rotated(nodes: range) -> list[int]:
    """Every node id, starting at a random one: concurrent starters rarely race for the same number."""
    first = random.randrange(len(nodes))
    return [*nodes[first:], *nodes[:first]]


class LeasedIds:
    """Post ids under a lease: `next_id` raises NoLease when the lease is not valid."""

    def __init__(self, lease: NodeLease) -> None:
        self.lease = lease
        self._generators: dict[int, PostIdGenerator] = {}

    def next_id(self) -> int:
        node = self.lease.node_id
        generator = self._generators.get(node)
        if generator is None:
            generator = self._generators[node] = PostIdGenerator(node)
        return generator.next_id()
