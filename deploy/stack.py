"""The local stack: real Kafka (KRaft), Cassandra and Prometheus as local processes on loopback.

Kafka and Cassandra come as jars from Maven Central (resolved by `mvn` into a git-ignored cache) and
run as `java -cp <jars> MainClass`; Prometheus is Debian's binary (see `deploy.servers`). Each server
started here has a pid file in the state directory; `down` stops only those pids, after checking that
the pid still runs a command line of ours (pids get reused).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from deploy import credentials, prerequisites, procfs, server_auth
from deploy.commands import COMMANDS
from deploy.errors import StackError
from deploy.procfs import GONE, resident_memory_mb
from deploy.recorded import on_stack, recorded_nodes
from deploy.servers import (
    PROJECT_ROOT,
    Server,
    is_ready,
    port_open,
    project_path,
    server_by_name,
    servers,
)
from fanout.settings import Settings

__all__ = [
    "COMMANDS", "PROJECT_ROOT", "Server", "StackError", "Status", "down", "follow_log", "is_ready", "log_tail",
    "on_stack", "port_open", "project_path", "recorded_nodes", "resident_memory_mb", "running_pid",
    "server_by_name", "servers", "start", "status", "stop_pid", "up",
]

KAFKA_GRACE = 20.0  # seconds a broker may take to stop after SIGTERM
EXEC_GRACE = 1.0  # seconds a live process may show an empty cmdline (it is inside execve) before we give up
# The first controller of a new KRaft cluster writes its bootstrap records (metadata.version, the SCRAM users)
# when it takes over the empty metadata log. If it loses the leadership during that activation, the next
# leader finds the log no longer empty and writes none of them (KAFKA-20839, open in Kafka 3.9): the cluster
# stays at metadata.version 3.0-IV1 without users, and every SASL login fails for good. A CI run hit it with
# a 3-node cluster whose brokers started seconds apart on a busy 2-core machine. A new cluster that logs
# this line holds no data yet, so `up` formats it again, up to KAFKA_FORMAT_ATTEMPTS times in all.
KAFKA_BOOTSTRAP_LOST = "No metadata.version feature level record was found in the log"
KAFKA_FORMAT_ATTEMPTS = 3


# --- processes -------------------------------------------------------------------------------------


def running_pid(srv: Server) -> int | None:
    """The pid from the pid file if that process is alive and is ours.

    The file is removed when it is garbage or stale: the process is gone (or a zombie), or its command
    line does not mention our run dir (the pid was reused). Right after Popen the child can still be in
    execve with an empty command line, so an empty one is re-read for up to EXEC_GRACE seconds; if it
    stays empty the pid is not claimed, but the file is kept.
    """
    try:
        text = srv.pid_file.read_text()
    except FileNotFoundError:
        return None
    try:
        pid = int(text.strip())
    except ValueError:
        pid = 0
    if pid <= 0:
        srv.pid_file.unlink(missing_ok=True)  # garbage
        return None
    deadline = time.monotonic() + EXEC_GRACE
    while True:
        cmdline = procfs.cmdline(pid)
        if procfs.proc_state(pid) in GONE or procfs.is_kernel_thread(pid):
            break  # the process is gone, or the pid now belongs to a kernel thread
        if cmdline:
            if str(srv.run_dir) in cmdline:
                return pid
            break  # the pid was reused by a process that is not ours
        if time.monotonic() >= deadline:
            return None  # still empty: not provably ours, not provably stale either
        time.sleep(0.05)
    srv.pid_file.unlink(missing_ok=True)
    return None


def log_tail(srv: Server, lines: int = 25) -> str:
    try:
        return "\n".join(srv.log_file.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log written)"


def start(srv: Server, say: Callable[[str], None]) -> subprocess.Popen[bytes]:
    cmd = COMMANDS[srv.kind](srv, say)
    srv.run_dir.mkdir(parents=True, exist_ok=True)
    (srv.run_dir / "tmp").mkdir(exist_ok=True)
    srv.log_file.parent.mkdir(parents=True, exist_ok=True)
    with srv.log_file.open("ab") as log:
        log.write(f"\n===== fanout stack: starting {srv.name} at {time.ctime()} =====\n".encode())
        log.flush()
        # A session of its own: Ctrl-C in the terminal does not reach the server; `down` stops it.
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=srv.run_dir, start_new_session=True)
    srv.pid_file.write_text(str(proc.pid))
    return proc


def stop_pid(srv: Server, pid: int, timeout: float = 60.0) -> None:
    """SIGTERM, then SIGKILL after `timeout` seconds; the pid file is removed either way."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        srv.pid_file.unlink(missing_ok=True)
        return
    if not procfs.wait_gone(pid, timeout):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # it exited during the last wait
        procfs.wait_gone(pid, 10.0)
    srv.pid_file.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------------
# Commands


@dataclass
class Status:
    name: str
    pid: int | None
    ready: bool
    address: str
    log: Path


Started = list[tuple[Server, subprocess.Popen[bytes]]]


def _record_nodes(s: Settings) -> None:
    recorded = recorded_nodes(s)
    if recorded is not None and recorded != s.stack.nodes:
        others = dataclasses.replace(s, stack=dataclasses.replace(s.stack, nodes=recorded))
        if any(running_pid(srv) or srv.data_dir.exists() for srv in servers(others) if srv.kind != "prometheus"):
            raise StackError(f"{project_path(s.stack.state_dir)} holds a {recorded}-node stack; stop and wipe it "
                             f"first (fanout stack down --wipe) or use another FANOUT_STATE_DIR")
    state = project_path(s.stack.state_dir)
    state.mkdir(parents=True, exist_ok=True)
    (state / "nodes").write_text(str(s.stack.nodes))


def requires_credentials(s: Settings) -> bool:
    """Whether this state dir's servers require credentials: the credentials file decides for a stack that
    exists, FANOUT_STACK_AUTH for a new one (no server data yet)."""
    if credentials.path(s).exists():
        return True
    return s.stack.stack_auth and not any(srv.data_dir.exists() for srv in servers(s) if srv.kind != "prometheus")


def up(s: Settings, say: Callable[[str], None] = print) -> list[Status]:
    """Start every server not already running, wait until all are ready, or stop what we started."""
    every = servers(s)
    if any(running_pid(srv) is None for srv in every):  # every prerequisite, before anything is written
        report = prerequisites.check("stack", s.stack.prometheus_bin)
        if report.missing:
            raise StackError(prerequisites.explain(report, "fanout stack up"))
    _record_nodes(s)
    if requires_credentials(s):
        credentials.create(s)  # before any server starts: Kafka's storage is formatted with its users
    elif s.stack.stack_auth:
        say("this stack's servers were created without credentials; they stay so until it is wiped "
            "(fanout stack down --wipe)")
    to_start = []
    for srv in every:
        pid = running_pid(srv)
        if pid is None:
            to_start.append(srv)
        else:
            say(f"{srv.name}: already running (pid {pid})")
    _check_ports_free(to_start)  # all of them before anything starts
    brokers = [srv for srv in every if srv.kind == "kafka"]
    new_cluster = NewKafkaCluster(brokers if all(srv in to_start and not (srv.data_dir / "meta.properties").exists()
                                                 for srv in brokers) else [])
    started: Started = []
    try:
        for srv in to_start:
            proc = start(srv, say)
            started.append((srv, proc))
            say(f"{srv.name}: started (pid {proc.pid}), waiting until ready")
        for attempt in range(1, KAFKA_FORMAT_ATTEMPTS + 1):
            try:
                for srv in every:
                    _wait_ready(srv, started, new_cluster.bootstrap_lost if srv.kind == "kafka" else None)
                    if srv in to_start:
                        say(f"{srv.name}: ready on {srv.address}")
                break
            except KafkaBootstrapLost as lost:
                if attempt == KAFKA_FORMAT_ATTEMPTS:
                    raise
                say(f"{lost}; formatting the new Kafka cluster again (attempt {attempt + 1} of "
                    f"{KAFKA_FORMAT_ATTEMPTS})")
                started = new_cluster.format_again(started, say)
        server_auth.provision(s, say)  # Cassandra's roles, once
    except BaseException as exc:
        _stop_started(started, exc, say)
        raise
    return status(s)


def _check_ports_free(srvs: list[Server]) -> None:
    busy = [(srv, port) for srv in srvs for port in srv.ports if port_open(srv.host, port)]
    if not busy:
        return
    taken = ", ".join(f"{srv.host}:{port} for {srv.name}" for srv, port in busy)
    names = ", ".join(dict.fromkeys(srv.name for srv, _ in busy))
    ports, are = ("port", "is") if len(busy) == 1 else ("ports", "are")
    raise StackError(f"{ports} {taken} {are} already in use by a process this stack did not start; nothing "
                     f"was started. Stop that process, or move {names} with FANOUT_* settings.")


def _stop_started(started: Started, error: BaseException, say: Callable[[str], None]) -> None:
    """Stop what this `up` started, each on its own: one failing stop does not leave the others running."""
    for srv, proc in reversed(started):
        try:
            stop_pid(srv, proc.pid, timeout=20)
        except Exception as exc:  # its pid file stays, so `fanout stack down` can still stop it
            note = f"while stopping {srv.name} (pid {proc.pid}) after that: {type(exc).__name__}: {exc}"
            error.add_note(note)
            say(f"{srv.name}: {note}")


class KafkaBootstrapLost(StackError):
    """A new Kafka cluster came up without its bootstrap records (KAFKA_BOOTSTRAP_LOST)."""


class NewKafkaCluster:
    """The brokers of a Kafka cluster this `up` formats (none if any of them holds data already): how to
    tell that it lost its bootstrap records, and how to start it again from a new format."""

    def __init__(self, brokers: list[Server]) -> None:
        self.brokers = brokers
        self._marks = {srv.name: _log_size(srv) for srv in brokers}  # only what this start logs counts

    def bootstrap_lost(self) -> None:
        """Raise KafkaBootstrapLost if a broker logged KAFKA_BOOTSTRAP_LOST since this start. Called once a
        second while the brokers start: each call reads only what they logged since the last one, from a
        line's length back (the line may have been half written at the last call)."""
        needle = KAFKA_BOOTSTRAP_LOST.encode()
        for srv in self.brokers:
            with srv.log_file.open("rb") as log:
                log.seek(self._marks[srv.name])
                new = log.read()
            if needle in new:
                raise KafkaBootstrapLost(f"{srv.name} logged '{KAFKA_BOOTSTRAP_LOST}': the new cluster has no "
                                         "metadata.version and no users (KAFKA-20839)")
            self._marks[srv.name] += max(0, len(new) - len(needle) + 1)

    def format_again(self, started: Started, say: Callable[[str], None]) -> Started:
        """Stop the brokers (all at once, as `down` does), wipe their storage, start them again."""
        ours = [(srv, proc) for srv, proc in started if srv in self.brokers]
        for _, proc in ours:
            _signal(proc.pid, signal.SIGTERM)
        for srv, proc in ours:
            stop_pid(srv, proc.pid, timeout=KAFKA_GRACE)
            shutil.rmtree(srv.data_dir, ignore_errors=True)
        self._marks = {srv.name: _log_size(srv) for srv in self.brokers}
        restarted = [(srv, start(srv, say)) for srv, _ in ours]
        for srv, proc in restarted:
            say(f"{srv.name}: started again (pid {proc.pid}), waiting until ready")
        return [(srv, proc) for srv, proc in started if srv not in self.brokers] + restarted


def _log_size(srv: Server) -> int:
    try:
        return srv.log_file.stat().st_size
    except FileNotFoundError:
        return 0


def _wait_ready(srv: Server, started: Started, stuck: Callable[[], None] | None = None) -> None:
    """Wait until `srv` is ready, failing at once when any server started by this `up` dies, or when
    `stuck` raises (a state it will never leave)."""
    ours = any(other is srv for other, _ in started)
    deadline = time.monotonic() + srv.ready_timeout
    while True:
        for other, proc in started:
            code = proc.poll()
            if code is not None:
                raise StackError(f"{other.name} died during start (exit {code}). Last lines of {other.log_file}:\n"
                                 f"{log_tail(other)}")
        if is_ready(srv):
            return
        if stuck is not None:
            stuck()
        if time.monotonic() > deadline:
            if ours:
                raise StackError(f"{srv.name} was not ready after {srv.ready_timeout:.0f}s. "
                                 f"Last lines of {srv.log_file}:\n{log_tail(srv)}")
            raise StackError(f"{srv.name} is running but not ready; see {srv.log_file}")
        time.sleep(1.0)


def down(s: Settings, wipe: bool = False, say: Callable[[str], None] = print) -> None:
    """SIGTERM to every server at once, SIGKILL to those still running after their grace time.

    At once, because the last broker of a KRaft cluster stopped alone has no controller quorum left and
    never finishes its controlled shutdown; a broker that still hangs is killed after KAFKA_GRACE seconds
    (its log is recovered at the next start; in a cluster its partitions are replicated)."""
    running = [(srv, pid) for srv in reversed(servers(s)) if (pid := running_pid(srv)) is not None]
    for srv in servers(s):
        if srv.name not in {other.name for other, _ in running}:
            say(f"{srv.name}: not running")
    for _, pid in running:
        _signal(pid, signal.SIGTERM)
    for srv, pid in running:
        grace = KAFKA_GRACE if srv.kind == "kafka" else 60.0
        if not procfs.wait_gone(pid, grace):
            say(f"{srv.name}: still running {grace:.0f}s after SIGTERM; SIGKILL")
            _signal(pid, signal.SIGKILL)
            procfs.wait_gone(pid, 10.0)
        srv.pid_file.unlink(missing_ok=True)
        say(f"{srv.name}: stopped (pid {pid})")
    for srv in servers(s) if wipe else []:
        if srv.data_dir.exists():
            shutil.rmtree(srv.data_dir)
            say(f"{srv.name}: data wiped ({srv.data_dir})")
    if wipe:
        (project_path(s.stack.state_dir) / "kafka-cluster-id").unlink(missing_ok=True)
        credentials.wipe(s)  # a wiped stack chooses again (FANOUT_STACK_AUTH) and gets new passwords


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass  # gone already


def status(s: Settings) -> list[Status]:
    result = []
    for srv in servers(s):
        pid = running_pid(srv)
        result.append(Status(srv.name, pid, pid is not None and is_ready(srv), srv.address, srv.log_file))
    return result


def follow_log(srv: Server, lines: int, follow: bool) -> Iterator[str]:
    if not srv.log_file.exists():
        raise StackError(f"{srv.name} has no log yet ({srv.log_file})")
    yield log_tail(srv, lines) + "\n"
    if not follow:
        return
    with srv.log_file.open(errors="replace") as f:
        f.seek(0, os.SEEK_END)
        while True:
            chunk = f.read()
            if chunk:
                yield chunk
            else:
                time.sleep(0.5)


if __name__ == "__main__":  # pragma: no cover - `fanout stack` is the entry point
    sys.exit("use: fanout stack up|down|status|logs")
