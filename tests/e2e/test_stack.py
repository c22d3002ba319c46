"""The local stack is real: outside clients talk to it, and the launcher fails loudly and cleanly.

The first three tests use the running stack (`stack` fixture). The launcher tests start their own
servers on free ports with a temporary state dir (the jar cache is shared, so nothing is downloaded)
and never touch the stack other people are using.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.partitioner import DefaultPartitioner
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import Cluster
from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kafka_clients import aiokafka_kwargs, kcat_args
from ports import free_ports
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from deploy import procfs
from deploy import stack as launcher
from deploy.stack import StackError
from fanout.adapters.cassandra.session import connect
from fanout.settings import Settings

pytestmark = pytest.mark.e2e

PARTITIONS = 3


# ---------------------------------------------------------------------------------------------------
# Kafka: confluent-kafka produces, aiokafka and kcat consume


def _messages() -> list[tuple[str, str]]:
    """50 messages of one hot key with three other keys interleaved: (key, value) in produce order."""
    out: list[tuple[str, str]] = []
    for i in range(50):
        out.append(("hot", f"hot-{i}"))
        if i % 10 == 0:
            out.extend((k, f"{k}-{i}") for k in ("k1", "k2", "k3"))
    return out


def _by_key(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = defaultdict(list)
    for key, value in pairs:
        grouped[key].append(value)
    return dict(grouped)


async def _consume_with_aiokafka(s: Settings, topic: str, expected: int) -> list[tuple[str, str, int]]:
    consumer = AIOKafkaConsumer(topic, **aiokafka_kwargs(s), group_id=None, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    seen: list[tuple[str, str, int]] = []
    await consumer.start()
    try:
        deadline = time.monotonic() + 30
        while len(seen) < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for tp, records in batch.items():
                seen.extend((r.key.decode(), r.value.decode(), tp.partition) for r in records if r.key and r.value)
    finally:
        await consumer.stop()
    return seen


def test_kafka_messages_reach_aiokafka_and_kcat_in_key_order(stack: Settings, unique: str) -> None:
    topic = f"e2e.stack.{unique}"
    admin = AdminClient(stack.kafka_config("admin"))  # outside clients, as the stack's admin if it has one
    admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])[topic].result(30)
    try:
        sent = _messages()
        errors: list[KafkaError] = []

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                errors.append(err)

        # murmur2 is the Java/aiokafka partitioner; librdkafka's default (consistent_random) is not.
        producer = Producer({**stack.kafka_config("admin"), "enable.idempotence": True,
                             "partitioner": "murmur2_random"})
        for key, value in sent:
            producer.produce(topic, key=key.encode(), value=value.encode(), on_delivery=delivered)
        assert producer.flush(30) == 0, "messages still undelivered after 30 s"
        assert errors == []
        expected = _by_key(sent)

        seen = asyncio.run(_consume_with_aiokafka(stack, topic, len(sent)))
        assert _by_key([(k, v) for k, v, _ in seen]) == expected
        # The producer and the consumer side (Faust/aiokafka) agree on each key's partition.
        partitioner = DefaultPartitioner()
        for key, _value, partition in seen:
            assert partition == partitioner(key.encode(), list(range(PARTITIONS)), list(range(PARTITIONS)))

        kcat = subprocess.run(
            ["kcat", "-C", *kcat_args(stack), "-t", topic, "-e", "-o", "beginning", "-f", "%k:%s\\n"],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        )
        assert kcat.returncode == 0, kcat.stderr
        lines = [line.split(":", 1) for line in kcat.stdout.splitlines() if line]
        assert _by_key([(k, v) for k, v in lines]) == expected
    finally:
        admin.delete_topics([topic])[topic].result(30)


# ---------------------------------------------------------------------------------------------------
# Cassandra: a CQL round trip with the driver


def test_cql_round_trip_in_a_keyspace_of_its_own(stack: Settings, unique: str) -> None:
    keyspace = f"e2e_stack_{unique}"
    auth = PlainTextAuthProvider(stack.cassandra_username, stack.cassandra_password)  # the project's role
    cluster = Cluster(stack.cassandra_contact_points, port=stack.cassandra_port, protocol_version=4,
                      auth_provider=auth if stack.cassandra_username else None)
    try:
        session = cluster.connect()
        session.default_timeout = 30  # schema changes can be slow on a busy box
        session.execute(f"CREATE KEYSPACE {keyspace} WITH replication = {stack.keyspace_replication}")
        try:
            session.execute(f"CREATE TABLE {keyspace}.inbox (user_id bigint, post_id bigint, body text, "
                            "PRIMARY KEY (user_id, post_id)) WITH CLUSTERING ORDER BY (post_id DESC)")
            insert = session.prepare(f"INSERT INTO {keyspace}.inbox (user_id, post_id, body) VALUES (?, ?, ?)")
            for post_id in (3, 1, 2):
                session.execute(insert, (42, post_id, f"post {post_id}"))
            rows = session.execute(f"SELECT post_id, body FROM {keyspace}.inbox WHERE user_id = %s", (42,))
            assert [(r.post_id, r.body) for r in rows] == [(3, "post 3"), (2, "post 2"), (1, "post 1")]
        finally:
            session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")
    finally:
        cluster.shutdown()


def test_the_project_sessions_send_requests_without_nagle_delay(stack: Settings) -> None:
    """Every connection of `connect` (worker, notifier, APIs, benches) has TCP_NODELAY. Without it, a
    request bigger than ~2.5 KB (a batch of ~40 rows) waits for the server's delayed ACK: on Linux ~40 ms
    on top of the ~4 ms the write takes (`fanout bench` measures the batched writes)."""
    cluster, session = connect(stack)
    try:
        session.execute("SELECT release_version FROM system.local")
        sockets = [c._socket for holder in cluster.get_connection_holders() for c in holder.get_connections()]
        assert sockets
        for sock in sockets:
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1, sock
    finally:
        cluster.shutdown()


# ---------------------------------------------------------------------------------------------------
# Prometheus: scrapes the worker metrics port


def _prometheus_get(s: Settings, path: str, **params: str) -> Any:
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    with urllib.request.urlopen(f"http://{s.host}:{s.stack.prometheus_port}{path}{query}", timeout=5) as resp:
        body = json.load(resp)
    assert body["status"] == "success", body
    return body["data"]


@contextmanager
def _metrics_server(port: int, registry: CollectorRegistry) -> Iterator[None]:
    """Serve `registry` on 127.0.0.1:port, waiting a little if a worker of another test still holds it."""
    deadline = time.monotonic() + 15
    while True:
        try:
            server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
            break
        except OSError as exc:
            if time.monotonic() > deadline:
                raise AssertionError(f"metrics port {port} stays taken by another process: {exc}") from exc
            time.sleep(0.5)
    try:
        yield
    finally:
        server.shutdown()  # stops serve_forever ...
        server.server_close()  # ... and releases the port for the worker's tests
        thread.join(5)


def test_prometheus_scrapes_the_worker_metrics_port(stack: Settings, unique: str) -> None:
    registry = CollectorRegistry()
    probe = Gauge("fanout_e2e_probe", "set by the stack e2e test to a value of its own", registry=registry)
    marker = int(unique, 16)  # proves that the scrape reached this test's server, not an older one
    probe.set(marker)
    with _metrics_server(stack.worker_metrics_port, registry):
        deadline = time.monotonic() + 30
        target: dict[str, Any] = {}
        value: float | None = None
        while time.monotonic() < deadline:
            targets = _prometheus_get(stack, "/api/v1/targets")["activeTargets"]
            target = next((t for t in targets if t["labels"]["job"] == "fanout-worker"), {})
            result = _prometheus_get(stack, "/api/v1/query", query='fanout_e2e_probe{job="fanout-worker"}')["result"]
            value = float(result[0]["value"][1]) if result else None
            if target.get("health") == "up" and value == marker:
                break
            time.sleep(1)
        assert target.get("health") == "up", f"fanout-worker target not up after 30 s: {target}"
        assert value == marker, f"Prometheus has fanout_e2e_probe={value}, this test serves {marker}"

    up = _prometheus_get(stack, "/api/v1/query", query='up{job="prometheus"} == 1')["result"]
    assert len(up) == 1, up


# ---------------------------------------------------------------------------------------------------
# The launcher's error paths, on servers of their own



def _isolated(base: Settings, tmp_path: Path, **overrides: Any) -> Settings:
    """A stack of its own: temp state dir, free ports, small heaps; the same jar cache as `base`."""
    names = ["kafka_port", "kafka_controller_port", "cassandra_port", "cassandra_storage_port", "prometheus_port",
             "worker_metrics_port", "read_api_port", "ingest_api_port"]
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    values: dict[str, Any] = {"state_dir": tmp_path / "state", "cache_dir": base.stack.cache_dir.resolve(),
                              "kafka_heap": "256m", "cassandra_heap": "256M", **ports}
    return Settings.load(**{**values, **overrides})


def _processes_mentioning(path: Path) -> list[str]:
    """Command lines of live processes that mention `path` (zombies have an empty cmdline)."""
    found = []
    for cmdline_file in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            cmdline = cmdline_file.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(path) in cmdline:
            found.append(f"{cmdline_file.parent.name}: {cmdline[:200]}")
    return found


def _assert_nothing_left(s: Settings) -> None:
    assert _processes_mentioning(s.stack.state_dir.resolve()) == []
    assert [srv.name for srv in launcher.servers(s) if srv.pid_file.exists()] == []


def test_busy_ports_fail_naming_them_before_anything_starts(settings: Settings, tmp_path: Path) -> None:
    with socket.socket() as squatter, socket.socket() as squatter2:
        for sock in (squatter, squatter2):
            sock.bind(("127.0.0.1", 0))
            sock.listen()
        port, controller_port = squatter.getsockname()[1], squatter2.getsockname()[1]
        s = _isolated(settings, tmp_path, prometheus_port=port, kafka_controller_port=controller_port)
        try:
            with pytest.raises(StackError, match=f"127.0.0.1:{port} for prometheus") as info:
                launcher.up(s, say=print)
            assert f"127.0.0.1:{controller_port} for kafka" in str(info.value)  # every busy port, at once
            # Prometheus comes last, yet nothing was started: no server wrote a log or a pid file.
            assert [srv.name for srv in launcher.servers(s) if srv.log_file.exists()] == []
            _assert_nothing_left(s)
        finally:
            launcher.down(s, say=print)


def test_server_dying_during_start_fails_at_once_with_its_log_and_stops_the_others(
    settings: Settings, tmp_path: Path
) -> None:
    s = _isolated(settings, tmp_path, cassandra_heap="1X")  # the JVM refuses this heap size and exits
    said: list[str] = []
    try:
        with pytest.raises(StackError) as info:
            launcher.up(s, say=said.append)
        message = str(info.value)
        assert "cassandra died during start" in message
        assert "Invalid initial heap size" in message  # the log tail
        # Reported while still waiting for Kafka (started first), not after Kafka became ready.
        assert "kafka: started" in " ".join(said) and not any(m.startswith("kafka: ready") for m in said), said
        _assert_nothing_left(s)
    finally:
        launcher.down(s, say=print)


def test_running_pid_removes_a_stale_pid_file(tmp_path: Path) -> None:
    srv = launcher.server_by_name(Settings.load(state_dir=tmp_path), "kafka")
    srv.run_dir.mkdir(parents=True)

    dead = subprocess.Popen(["true"])
    dead.wait()
    srv.pid_file.write_text(str(dead.pid))
    assert launcher.running_pid(srv) is None
    assert not srv.pid_file.exists()

    srv.pid_file.write_text(str(os.getpid()))  # alive, but not a server of this state dir (pid reused)
    assert launcher.running_pid(srv) is None
    assert not srv.pid_file.exists()


def test_running_pid_removes_a_garbage_pid_file(tmp_path: Path) -> None:
    srv = launcher.server_by_name(Settings.load(state_dir=tmp_path), "kafka")
    srv.run_dir.mkdir(parents=True)
    for garbage in ("not a pid\n", "", "-5", "0"):
        srv.pid_file.write_text(garbage)
        assert launcher.running_pid(srv) is None
        assert not srv.pid_file.exists(), garbage


@contextmanager
def _process_of(srv: launcher.Server, setup: str = "pass") -> Iterator[subprocess.Popen[bytes]]:
    """A live process whose command line mentions srv's run dir, as a server of ours does."""
    script = f"{setup}; print('ready', flush=True); import time; time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", script, str(srv.run_dir)], stdout=subprocess.PIPE)
    try:
        # Popen can return while the child is still inside execve (its cmdline still empty): wait for it.
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        yield proc
    finally:
        proc.kill()
        proc.communicate()


def test_running_pid_waits_for_a_server_still_in_execve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    srv = launcher.server_by_name(Settings.load(state_dir=tmp_path), "kafka")
    srv.run_dir.mkdir(parents=True)
    real_cmdline = procfs.cmdline
    reads: list[str] = []

    def cmdline_in_execve(pid: int) -> str:
        """/proc/<pid>/cmdline as it reads right after Popen: empty for a while, then the real one."""
        reads.append(real_cmdline(pid) if len(reads) >= 4 else "")
        return reads[-1]

    with _process_of(srv) as proc:
        srv.pid_file.write_text(str(proc.pid))
        monkeypatch.setattr(procfs, "cmdline", cmdline_in_execve)
        assert launcher.running_pid(srv) == proc.pid
        assert srv.pid_file.exists()
        assert reads[:4] == [""] * 4 and str(srv.run_dir) in reads[-1]

        # A cmdline that stays empty is not claimed (so never signalled), but the file is not deleted either.
        monkeypatch.setattr(procfs, "cmdline", lambda pid: "")
        monkeypatch.setattr(launcher, "EXEC_GRACE", 0.3)
        t0 = time.monotonic()
        assert launcher.running_pid(srv) is None
        assert time.monotonic() - t0 >= 0.3
        assert srv.pid_file.exists()


def test_running_pid_recognises_its_own_server_until_it_exits(tmp_path: Path) -> None:
    srv = launcher.server_by_name(Settings.load(state_dir=tmp_path), "kafka")
    srv.run_dir.mkdir(parents=True)
    with _process_of(srv) as proc:
        srv.pid_file.write_text(str(proc.pid))
        assert launcher.running_pid(srv) == proc.pid
        proc.kill()  # not reaped: it stays a zombie, which is not running either
        deadline = time.monotonic() + 10
        while launcher.running_pid(srv) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert launcher.running_pid(srv) is None
        assert not srv.pid_file.exists()


def test_missing_java_is_named(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    monkeypatch.setenv("PATH", str(empty_bin))
    s = _isolated(settings, tmp_path)
    try:
        with pytest.raises(StackError, match="so it started nothing:\n  - java: java is not on PATH"):
            launcher.up(s, say=print)
        _assert_nothing_left(s)
    finally:
        launcher.down(s, say=print)


# ---------------------------------------------------------------------------------------------------
# Stopping: races and failures during cleanup


def test_stop_pid_survives_the_process_exiting_just_before_sigkill(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    srv = launcher.server_by_name(Settings.load(state_dir=tmp_path), "kafka")
    srv.run_dir.mkdir(parents=True)
    with _process_of(srv, "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN)") as proc:
        srv.pid_file.write_text(str(proc.pid))
        real_kill = os.kill

        def kill(pid: int, sig: int) -> None:
            if pid == proc.pid and sig == signal.SIGKILL:
                real_kill(pid, sig)  # it exits on its own during the last wait ...
                proc.wait()
                raise ProcessLookupError(3, "No such process")  # ... so SIGKILL finds no process
            real_kill(pid, sig)

        monkeypatch.setattr(launcher.os, "kill", kill)
        launcher.stop_pid(srv, proc.pid, timeout=0.5)
        assert proc.returncode == -signal.SIGKILL
        assert not srv.pid_file.exists()


def _fake_servers(monkeypatch: pytest.MonkeyPatch, dying: str) -> list[subprocess.Popen[bytes]]:
    """Servers that are python processes (never ready; `dying` exits at once); returns what `up` starts."""
    def command(srv: launcher.Server, _say: Any) -> list[str]:
        script = "import sys; sys.exit('bad config')" if srv.name == dying else "import time; time.sleep(60)"
        return [sys.executable, "-c", script, str(srv.run_dir)]

    for name in ("kafka", "cassandra", "prometheus"):
        monkeypatch.setitem(launcher.COMMANDS, name, command)
    monkeypatch.setattr(launcher, "is_ready", lambda srv: False)
    procs: list[subprocess.Popen[bytes]] = []
    real_start = launcher.start

    def start(srv: launcher.Server, say: Any) -> subprocess.Popen[bytes]:
        procs.append(real_start(srv, say))
        return procs[-1]

    monkeypatch.setattr(launcher, "start", start)
    return procs


def test_a_failing_stop_during_cleanup_does_not_leave_the_others_running(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = _isolated(settings, tmp_path)
    procs = _fake_servers(monkeypatch, dying="prometheus")
    real_stop = launcher.stop_pid

    def stop_pid(srv: launcher.Server, pid: int, timeout: float = 60.0) -> None:
        if srv.name == "cassandra":
            raise PermissionError("cannot signal cassandra")
        real_stop(srv, pid, timeout)

    monkeypatch.setattr(launcher, "stop_pid", stop_pid)
    try:
        t0 = time.monotonic()
        with pytest.raises(StackError, match="prometheus died during start") as info:  # the original error
            launcher.up(s, say=print)
        assert time.monotonic() - t0 < 30  # not after Kafka's ready timeout
        assert "bad config" in str(info.value)
        assert any("cannot signal cassandra" in note for note in getattr(info.value, "__notes__", []))
        kafka, cassandra, prometheus = procs
        assert kafka.poll() is not None and prometheus.poll() is not None  # stopped despite cassandra's failure
        assert cassandra.poll() is None
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        launcher.down(s, say=print)


# ---------------------------------------------------------------------------------------------------
# Paths and addresses


def test_relative_state_dir_is_anchored_at_the_project_root(
    stack: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = Path(__file__).resolve().parents[2]
    assert launcher.PROJECT_ROOT == root
    monkeypatch.chdir(tmp_path)
    relative = launcher.server_by_name(Settings.load(state_dir=Path(".fanout/state")), "kafka")
    assert relative.run_dir == root / ".fanout" / "state" / "kafka"
    # The default settings find the running stack from any working directory.
    assert launcher.running_pid(launcher.server_by_name(Settings.load(), "kafka")) is not None


def test_status_from_a_subdirectory_finds_the_stack_and_prints_whole_log_paths(stack: Settings) -> None:
    root = Path(__file__).resolve().parents[2]
    fanout = Path(sys.executable).parent / "fanout"
    env = {**os.environ, "COLUMNS": "60"}  # narrow: a table column would cut the paths
    result = subprocess.run([str(fanout), "stack", "status"], cwd=root / "tests", env=env, capture_output=True,
                            text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for srv in launcher.servers(stack):
        assert f"{srv.name} log: {srv.log_file}" in lines, result.stdout


_connects: list[list[Any]] = []  # the addresses of socket.connect calls go to each list in here


def _record_connects(event: str, args: tuple[Any, ...]) -> None:
    if event == "socket.connect":
        for recorder in _connects:
            recorder.append(args[1])


sys.addaudithook(_record_connects)  # audit hooks stay for the whole session; this one is cheap


def test_readiness_connects_to_the_client_host_not_a_wildcard_bind_address(stack: Settings) -> None:
    addresses: list[Any] = []
    _connects.append(addresses)
    try:
        wildcard = dataclasses.replace(stack, host="0.0.0.0")
        assert {srv.name: launcher.is_ready(srv) for srv in launcher.servers(wildcard)} == {
            "kafka": True, "cassandra": True, "prometheus": True}
    finally:
        _connects.remove(addresses)
    hosts = {address[0] for address in addresses if isinstance(address, tuple)}
    assert "127.0.0.1" in hosts and "0.0.0.0" not in hosts, hosts
