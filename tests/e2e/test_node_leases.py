"""Post ids stay unique across ingest replicas: each process mints under a node id leased in Cassandra."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from live import own_deployment
from ports import free_port

from deploy.processes import ProcessGroup
from fanout.adapters.cassandra import connect
from fanout.adapters.cassandra.leases import CassandraNodeLeases
from fanout.api.auth import Tokens
from fanout.core.ids import NODE_BITS, SEQUENCE_BITS
from fanout.settings import Settings
from fanout.write.leases import NodeLease, NoLease

pytestmark = pytest.mark.e2e

POSTS_EACH = 300


def node_of(post_id: int) -> int:
    return (post_id >> SEQUENCE_BITS) & ((1 << NODE_BITS) - 1)


@pytest.fixture
def leased(stack: Settings, unique: str) -> Iterator[Settings]:
    # No write limit: 1,200 posts by 7 users as fast as two replicas take them (a test of id minting).
    with own_deployment(stack, f"e2e-leases-{unique}", rate_limit_writes="") as s:
        yield s


def test_two_ingest_processes_mint_distinct_ids_under_distinct_leased_nodes(leased: Settings,
                                                                             tmp_path: Path) -> None:
    replicas = [dataclasses.replace(leased, ingest_api_port=port) for port in (leased.ingest_api_port, free_port())]
    with ProcessGroup(replicas[0], tmp_path / "a").start("ingest-api") as a, \
            ProcessGroup(replicas[1], tmp_path / "b").start("ingest-api") as b:
        tokens = Tokens(leased)

        def post_many(url: str) -> list[int]:
            with httpx.Client(base_url=url, timeout=30) as http:
                return [http.post("/v1/posts", json={"author_id": 1 + i % 7, "body": f"p{i}"},
                                  headers=tokens.headers(1 + i % 7)).raise_for_status().json()["post_id"]
                        for i in range(POSTS_EACH)]

        with ThreadPoolExecutor(4) as pool:  # two clients per replica, all at once
            futures = [pool.submit(post_many, g.url("ingest-api")) for g in (a, b, a, b)]
            per_client = [f.result() for f in futures]
    ids = [i for client in per_client for i in client]
    assert len(set(ids)) == len(ids) == 4 * POSTS_EACH
    nodes_a = {node_of(i) for i in per_client[0] + per_client[2]}
    nodes_b = {node_of(i) for i in per_client[1] + per_client[3]}
    assert len(nodes_a) == len(nodes_b) == 1 and nodes_a != nodes_b and 0 not in nodes_a | nodes_b


def test_leases_in_cassandra_are_exclusive_until_released_or_expired(leased: Settings) -> None:
    cluster, session = connect(leased)
    try:
        store = CassandraNodeLeases(session, leased)
        first = NodeLease(store, ttl_seconds=3, pinned=9)
        assert first.acquire() == 9
        with pytest.raises(NoLease):
            NodeLease(store, ttl_seconds=3, pinned=9).acquire()
        assert store.renew(9, first.owner, 3) and not store.renew(9, "someone else", 3)
        others = {NodeLease(store, ttl_seconds=3).acquire() for _ in range(5)}
        assert len(others) == 5 and 9 not in others and 0 not in others
        first.close()  # released: free at once
        second = NodeLease(store, ttl_seconds=3, pinned=9)
        assert second.acquire() == 9
        time.sleep(3.5)  # never renewed: the TTL frees it
        assert NodeLease(store, ttl_seconds=3, pinned=9).acquire() == 9
    finally:
        cluster.shutdown()
