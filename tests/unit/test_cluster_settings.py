"""The local stack's topology and what the clients derive from it, alone and as a 3-node cluster: no servers."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy import stack as launcher
from deploy.stack import StackError
from fanout.adapters.cassandra.session import consistency
from fanout.settings import Settings


def test_one_node_is_one_broker_one_cassandra_node_one_copy(tmp_path: Path) -> None:
    s = Settings.load(env={}, state_dir=tmp_path)
    assert [srv.name for srv in launcher.servers(s)] == ["kafka", "cassandra", "prometheus"]
    assert s.kafka_bootstrap == "127.0.0.1:9092" and s.cassandra_contact_points == ["127.0.0.1"]
    assert (s.topic_replicas, s.min_insync_replicas) == (1, 1)
    assert "'replication_factor': 1" in s.keyspace_replication
    assert s.write_consistency == s.read_consistency == "LOCAL_QUORUM"  # a quorum of one, never ONE silently


def test_three_nodes_listen_on_their_own_loopback_addresses_and_replicate_three_times(tmp_path: Path) -> None:
    s = Settings.load(env={"FANOUT_NODES": "3"}, state_dir=tmp_path)
    srvs = launcher.servers(s)
    assert [(srv.name, srv.host) for srv in srvs] == [
        ("kafka-1", "127.0.0.1"), ("kafka-2", "127.0.0.2"), ("kafka-3", "127.0.0.3"),
        ("cassandra-1", "127.0.0.1"), ("cassandra-2", "127.0.0.2"), ("cassandra-3", "127.0.0.3"),
        ("prometheus", "127.0.0.1")]
    assert {srv.kind for srv in srvs} == {"kafka", "cassandra", "prometheus"}
    assert len({srv.run_dir for srv in srvs}) == len(srvs)  # data, configs and pids apart
    assert s.kafka_bootstrap == "127.0.0.1:9092,127.0.0.2:9092,127.0.0.3:9092"
    assert s.cassandra_contact_points == ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    assert (s.topic_replicas, s.min_insync_replicas) == (3, 2)
    assert "'replication_factor': 3" in s.keyspace_replication
    explicit = Settings.load(env={"FANOUT_NODES": "3", "FANOUT_TOPIC_REPLICATION_FACTOR": "2",
                                  "FANOUT_REPLICATION": "{'class': 'NetworkTopologyStrategy', 'dc1': 3}"})
    assert (explicit.topic_replicas, explicit.min_insync_replicas) == (2, 1)
    assert explicit.keyspace_replication == "{'class': 'NetworkTopologyStrategy', 'dc1': 3}"


@pytest.mark.parametrize(("env", "message"), [
    ({"FANOUT_NODES": "2"}, "a quorum of 2 nodes cannot lose one"),
    ({"FANOUT_NODES": "3", "FANOUT_HOST": "10.0.0.5"}, "FANOUT_HOST must be 127.0.0.1"),
])
def test_impossible_clusters_are_refused_with_a_reason(env: dict[str, str], message: str) -> None:
    with pytest.raises(StackError, match=message):
        launcher.servers(Settings.load(env=env))


def test_the_stack_remembers_its_node_count_unless_told(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FANOUT_NODES", raising=False)
    s = Settings.load(env={}, state_dir=tmp_path)
    assert launcher.on_stack(s).stack.nodes == 1
    (tmp_path / "nodes").write_text("3")
    assert launcher.on_stack(s).stack.nodes == 3
    assert launcher.on_stack(s, nodes=1).stack.nodes == 1
    monkeypatch.setenv("FANOUT_NODES", "1")
    assert launcher.on_stack(s).stack.nodes == 1


def test_consistency_levels_are_named_and_checked() -> None:
    assert consistency("local_quorum") == consistency("LOCAL_QUORUM") != consistency("ONE")
    with pytest.raises(ValueError, match="unknown Cassandra consistency level 'TWO_THIRDS'"):
        consistency("TWO_THIRDS")
