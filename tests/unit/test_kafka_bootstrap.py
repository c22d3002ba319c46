"""A new Kafka cluster that lost its bootstrap records (KAFKA-20839) is found in its brokers' logs and
formatted again (deploy/stack.py). The Kafka bug itself cannot be set off on purpose: its trigger is a lost
leadership during the first controller's activation. These tests stand in sleep processes for brokers."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from deploy import stack
from deploy.servers import Server, servers
from fanout.settings import Settings

LOST_LINE = ("[2026-12-04 08:44:44,256] WARN [QuorumController id=2] Performing controller activation. "
             f"{stack.KAFKA_BOOTSTRAP_LOST}. Treating the log as version 3.0-IV1.\n")


def brokers(tmp_path: Path) -> list[Server]:
    s = Settings.load(env={"FANOUT_NODES": "3"}, state_dir=tmp_path)
    found = [srv for srv in servers(s) if srv.kind == "kafka"]
    for srv in found:
        srv.log_file.parent.mkdir(parents=True, exist_ok=True)
        srv.log_file.write_text("an earlier start\n" + LOST_LINE)  # older lines do not count
    return found


def test_only_what_the_brokers_log_after_this_start_counts(tmp_path: Path) -> None:
    cluster = stack.NewKafkaCluster(brokers(tmp_path))
    cluster.bootstrap_lost()  # the earlier start's line: not this cluster's
    with cluster.brokers[1].log_file.open("a") as log:
        log.write(LOST_LINE)
    with pytest.raises(stack.KafkaBootstrapLost, match="kafka-2 logged"):
        cluster.bootstrap_lost()


def test_a_line_half_written_at_one_look_is_found_at_the_next(tmp_path: Path) -> None:
    cluster = stack.NewKafkaCluster(brokers(tmp_path))
    half = len(LOST_LINE) // 2
    with cluster.brokers[0].log_file.open("a") as log:
        log.write(LOST_LINE[:half])
    cluster.bootstrap_lost()
    with cluster.brokers[0].log_file.open("a") as log:
        log.write(LOST_LINE[half:])
    with pytest.raises(stack.KafkaBootstrapLost, match="kafka-1 logged"):
        cluster.bootstrap_lost()


def test_formatting_again_stops_wipes_and_restarts_only_the_brokers(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    procs: list[subprocess.Popen[bytes]] = []

    def fake_start(srv: Server, say: Callable[[str], None]) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(["sleep", "60"])
        procs.append(proc)
        srv.pid_file.parent.mkdir(parents=True, exist_ok=True)
        srv.pid_file.write_text(str(proc.pid))
        return proc

    monkeypatch.setattr(stack, "start", fake_start)
    kafka = brokers(tmp_path)
    other = Server("cassandra", (1,), 1.0, kafka[0].settings)
    try:
        started = [(srv, fake_start(srv, print)) for srv in [*kafka, other]]
        for srv in kafka:
            srv.data_dir.mkdir(parents=True)
            (srv.data_dir / "meta.properties").write_text("formatted\n")
        cluster = stack.NewKafkaCluster(kafka)
        again = cluster.format_again(started, print)
        old = {srv.name: proc for srv, proc in started}
        assert [srv.name for srv, _ in again] == ["cassandra", "kafka-1", "kafka-2", "kafka-3"]
        for srv, proc in again:
            if srv.kind == "kafka":
                assert old[srv.name].poll() is not None, f"{srv.name}'s first process was stopped"
                assert proc.poll() is None and proc is not old[srv.name]
                assert not srv.data_dir.exists(), "its storage is wiped, to be formatted again"
            else:
                assert proc is old[srv.name] and proc.poll() is None, "other servers are left alone"
        cluster.bootstrap_lost()  # the lines logged before the new start no longer count
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
