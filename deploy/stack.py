"""The local stack: real Kafka (KRaft), Cassandra and Prometheus as local processes on loopback.

Kafka and Cassandra come as jars from Maven Central (resolved by `mvn` into a git-ignored cache) and
run as `java -cp <jars> MainClass`; Prometheus is Debian's binary. Each server started here has a pid
file in the state directory; `down` stops only those pids, after checking that the pid still runs a
command line of ours (pids get reused).
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from string import Template

from fanout.settings import Settings

DEPLOY_DIR = Path(__file__).resolve().parent
TEMPLATES = DEPLOY_DIR / "templates"

# Upstream conf/jvm17-server.options: Cassandra needs these module flags on Java 17.
CASSANDRA_JAVA17_FLAGS = [
    *(
        f"--add-exports={m}=ALL-UNNAMED"
        for m in (
            "java.base/jdk.internal.misc",
            "java.management.rmi/com.sun.jmx.remote.internal.rmi",
            "java.management/com.sun.jmx.remote.security",
            "java.rmi/sun.rmi.registry",
            "java.rmi/sun.rmi.server",
            "java.sql/java.sql",
            "java.base/java.lang.ref",
            "jdk.unsupported/sun.misc",
        )
    ),
    *(
        f"--add-opens={m}=ALL-UNNAMED"
        for m in (
            "java.base/java.lang.module",
            "java.base/jdk.internal.loader",
            "java.base/jdk.internal.ref",
            "java.base/jdk.internal.reflect",
            "java.base/jdk.internal.math",
            "java.base/jdk.internal.module",
            "java.base/jdk.internal.util.jar",
            "jdk.management/com.sun.management.internal",
            "java.base/sun.nio.ch",
            "java.base/java.io",
            "java.base/java.lang.reflect",
            "java.base/java.lang",
            "java.base/java.util",
            "java.base/java.nio",
        )
    ),
]


class StackError(RuntimeError):
    """A failure with a message meant for the person at the terminal."""


@dataclass
class Server:
    name: str
    ports: tuple[int, ...]
    ready_timeout: float
    settings: Settings

    @property
    def run_dir(self) -> Path:
        return self.settings.state_dir.resolve() / self.name

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "pid"

    @property
    def log_file(self) -> Path:
        return self.settings.state_dir.resolve() / "logs" / f"{self.name}.log"

    @property
    def data_dir(self) -> Path:
        return self.run_dir / "data"

    @property
    def address(self) -> str:
        return f"{self.settings.host}:{self.ports[0]}"


# ---------------------------------------------------------------------------------------------------
# Jars from Maven Central


def resolve_classpath(s: Settings, name: str, version: str, say: Callable[[str], None]) -> list[str]:
    """The server's runtime classpath, resolved with mvn on first use and cached by version."""
    cache = s.cache_dir.resolve()
    cp_file = cache / "classpath" / f"{name}-{version}.txt"
    if cp_file.exists():
        jars = cp_file.read_text().strip().split(os.pathsep)
        if jars and all(Path(j).exists() for j in jars):
            return jars
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError("Maven (mvn) is not installed; it resolves the Kafka and Cassandra jars. "
                         "Install it (Debian: apt-get install maven).")
    say(f"resolving {name} {version} jars from Maven Central (first run only; cached in {cache})")
    cp_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = cp_file.with_suffix(".partial")
    cmd = [
        mvn, "-B", "-q", "-f", str(DEPLOY_DIR / "maven" / name / "pom.xml"),
        f"-D{name}.version={version}", f"-Dmaven.repo.local={cache / 'maven'}",
        "dependency:build-classpath", "-DincludeScope=runtime", f"-Dmdep.outputFile={tmp}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not tmp.exists():
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise StackError(f"resolving {name} {version} with Maven failed (exit {proc.returncode}):\n{tail}")
    tmp.replace(cp_file)
    return cp_file.read_text().strip().split(os.pathsep)


def java_binary() -> str:
    java = shutil.which("java")
    if java is None:
        raise StackError("Java is not installed; Kafka and Cassandra need OpenJDK 17 "
                         "(Debian: apt-get install openjdk-17-jre-headless).")
    return java


# ---------------------------------------------------------------------------------------------------
# Server definitions: config files, command line, readiness


def _render(template: str, dest: Path, **values: object) -> Path:
    text = Template((TEMPLATES / template).read_text()).substitute(**{k: str(v) for k, v in values.items()})
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(text)
    return dest


def servers(s: Settings) -> list[Server]:
    return [
        Server("kafka", (s.kafka_port, s.kafka_controller_port), 120.0, s),
        Server("cassandra", (s.cassandra_port, s.cassandra_storage_port), 240.0, s),
        Server("prometheus", (s.prometheus_port,), 60.0, s),
    ]


def server_by_name(s: Settings, name: str) -> Server:
    for srv in servers(s):
        if srv.name == name:
            return srv
    raise StackError(f"unknown server {name!r}; one of: kafka, cassandra, prometheus")


def _kafka_command(srv: Server, say: Callable[[str], None]) -> list[str]:
    s = srv.settings
    java = java_binary()
    cp = os.pathsep.join(resolve_classpath(s, "kafka", s.kafka_version, say))
    props = _render("kafka-server.properties", srv.run_dir / "server.properties", host=s.host,
                    port=s.kafka_port, controller_port=s.kafka_controller_port, data_dir=srv.data_dir)
    log4j = _render("kafka-log4j.properties", srv.run_dir / "log4j.properties")
    jvm = [java, f"-Xms{s.kafka_heap}", f"-Xmx{s.kafka_heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
           "-Djava.awt.headless=true", f"-Dlog4j.configuration=file:{log4j}",
           f"-Dkafka.logs.dir={srv.log_file.parent}", "-cp", cp]
    if not (srv.data_dir / "meta.properties").exists():
        # KRaft storage must be formatted once with a cluster id: 16 random bytes, base64url.
        cluster_id = "A" + base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")[1:]
        fmt = subprocess.run([*jvm, "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}",
                              "--config", str(props), "--ignore-formatted"], capture_output=True, text=True)
        if fmt.returncode != 0:
            raise StackError(f"formatting Kafka storage failed:\n{fmt.stdout}{fmt.stderr}")
    return [*jvm, "kafka.Kafka", str(props)]


def _cassandra_command(srv: Server, say: Callable[[str], None]) -> list[str]:
    s = srv.settings
    java = java_binary()
    jars = resolve_classpath(s, "cassandra", s.cassandra_version, say)
    yaml = _render("cassandra.yaml", srv.run_dir / "cassandra.yaml", host=s.host,
                   port=s.cassandra_port, storage_port=s.cassandra_storage_port)
    logback = _render("cassandra-logback.xml", srv.run_dir / "logback.xml")
    jamm = [j for j in jars if Path(j).name.startswith("jamm-")]
    return [
        java, f"-Xms{s.cassandra_heap}", f"-Xmx{s.cassandra_heap}", "-XX:+UseG1GC", "-Xss256k",
        *CASSANDRA_JAVA17_FLAGS,
        *([f"-javaagent:{jamm[0]}"] if jamm else []),
        "-Djdk.attach.allowAttachSelf=true", "-Djava.net.preferIPv4Stack=true",
        f"-Dcassandra.config=file://{yaml}", "-Dcassandra-foreground=yes",
        f"-Dcassandra.storagedir={srv.data_dir}", f"-Dcassandra.logdir={srv.log_file.parent}",
        f"-Dlogback.configurationFile={logback}", "-Dcassandra.skip_wait_for_gossip_to_settle=0",
        # Local stack only: skips fsync of system tables, which makes a cold start much faster.
        "-Dcassandra.unsafesystem=true",
        f"-Djna.tmpdir={srv.run_dir / 'tmp'}",
        "-cp", os.pathsep.join(jars), "org.apache.cassandra.service.CassandraDaemon",
    ]


def _prometheus_command(srv: Server, say: Callable[[str], None]) -> list[str]:
    s = srv.settings
    binary = shutil.which(s.prometheus_bin) or (s.prometheus_bin if Path(s.prometheus_bin).exists() else None)
    if binary is None:
        raise StackError(f"Prometheus ({s.prometheus_bin}) is not installed "
                         "(Debian: apt-get install prometheus; .ci/run installs it).")
    cfg = _render("prometheus.yml", srv.run_dir / "prometheus.yml", host=s.host,
                  scrape_interval=s.scrape_interval, prometheus_port=s.prometheus_port,
                  worker_metrics_port=s.worker_metrics_port, read_api_port=s.read_api_port,
                  ingest_api_port=s.ingest_api_port)
    return [binary, f"--config.file={cfg}", f"--storage.tsdb.path={srv.data_dir}",
            f"--web.listen-address={s.host}:{s.prometheus_port}", "--storage.tsdb.retention.time=2d"]


COMMANDS: dict[str, Callable[[Server, Callable[[str], None]], list[str]]] = {
    "kafka": _kafka_command, "cassandra": _cassandra_command, "prometheus": _prometheus_command,
}


def is_ready(srv: Server) -> bool:
    """Real readiness: a Kafka metadata answer, a CQL query answer, Prometheus /-/ready."""
    s = srv.settings
    if not port_open(s.host, srv.ports[0]):
        return False
    try:
        if srv.name == "kafka":
            from confluent_kafka.admin import AdminClient

            AdminClient({"bootstrap.servers": s.kafka_bootstrap}).list_topics(timeout=3)
            return True
        if srv.name == "cassandra":
            from cassandra.cluster import Cluster

            cluster = Cluster([s.host], port=s.cassandra_port, protocol_version=4, connect_timeout=3)
            try:
                row = cluster.connect().execute("SELECT release_version FROM system.local").one()
                return row is not None
            finally:
                cluster.shutdown()
        with urllib.request.urlopen(f"http://{s.host}:{s.prometheus_port}/-/ready", timeout=3) as r:
            return bool(r.status == 200)
    except Exception:
        return False


# ---------------------------------------------------------------------------------------------------
# Processes


def port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def running_pid(srv: Server) -> int | None:
    """The pid from the pid file if that process is alive and is ours; a stale file is removed."""
    try:
        pid = int(srv.pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        cmdline = ""
    stat = _proc_state(pid)
    if str(srv.run_dir) in cmdline and stat not in ("Z", "X", None):
        return pid
    srv.pid_file.unlink(missing_ok=True)  # stale: the process is gone or the pid was reused
    return None


def _proc_state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def log_tail(srv: Server, lines: int = 25) -> str:
    try:
        return "\n".join(srv.log_file.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log written)"


def start(srv: Server, say: Callable[[str], None]) -> subprocess.Popen[bytes]:
    for port in srv.ports:
        if port_open(srv.settings.host, port):
            raise StackError(f"port {srv.settings.host}:{port} for {srv.name} is already in use by a process "
                             f"this stack did not start. Stop it, or move {srv.name} with FANOUT_* settings.")
    cmd = COMMANDS[srv.name](srv, say)
    srv.run_dir.mkdir(parents=True, exist_ok=True)
    (srv.run_dir / "tmp").mkdir(exist_ok=True)
    srv.log_file.parent.mkdir(parents=True, exist_ok=True)
    log = srv.log_file.open("ab")
    log.write(f"\n===== fanout stack: starting {srv.name} at {time.ctime()} =====\n".encode())
    log.flush()
    # A session of its own: Ctrl-C in the terminal does not reach the server; `down` stops it.
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            cwd=srv.run_dir, start_new_session=True)
    log.close()
    srv.pid_file.write_text(str(proc.pid))
    return proc


def stop_pid(srv: Server, pid: int, timeout: float = 60.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        srv.pid_file.unlink(missing_ok=True)
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if _proc_state(pid) in (None, "Z", "X"):
            break
        time.sleep(0.2)
    else:
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        _reap(pid)
    srv.pid_file.unlink(missing_ok=True)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


# ---------------------------------------------------------------------------------------------------
# Commands


@dataclass
class Status:
    name: str
    pid: int | None
    ready: bool
    address: str
    log: Path


def up(s: Settings, say: Callable[[str], None] = print) -> list[Status]:
    """Start every server not already running, wait until all are ready, or stop what we started."""
    started: list[tuple[Server, subprocess.Popen[bytes]]] = []
    try:
        for srv in servers(s):
            if running_pid(srv) is not None:
                say(f"{srv.name}: already running (pid {running_pid(srv)})")
                continue
            proc = start(srv, say)
            started.append((srv, proc))
            say(f"{srv.name}: started (pid {proc.pid}), waiting until ready")
        for srv, proc in started:
            _wait_ready(srv, proc)
            say(f"{srv.name}: ready on {srv.address}")
        _wait_all_ready(s)
    except BaseException:
        for srv, proc in reversed(started):
            stop_pid(srv, proc.pid, timeout=20)
        raise
    return status(s)


def _wait_ready(srv: Server, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + srv.ready_timeout
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            raise StackError(f"{srv.name} died during start (exit {code}). Last lines of {srv.log_file}:\n"
                             f"{log_tail(srv)}")
        if is_ready(srv):
            return
        time.sleep(1.0)
    raise StackError(f"{srv.name} was not ready after {srv.ready_timeout:.0f}s. Last lines of {srv.log_file}:\n"
                     f"{log_tail(srv)}")


def _wait_all_ready(s: Settings) -> None:
    for srv in servers(s):
        deadline = time.monotonic() + srv.ready_timeout
        while not is_ready(srv):
            if time.monotonic() > deadline:
                raise StackError(f"{srv.name} is running but not ready; see {srv.log_file}")
            time.sleep(1.0)


def down(s: Settings, wipe: bool = False, say: Callable[[str], None] = print) -> None:
    for srv in reversed(servers(s)):
        pid = running_pid(srv)
        if pid is None:
            say(f"{srv.name}: not running")
        else:
            stop_pid(srv, pid)
            say(f"{srv.name}: stopped (pid {pid})")
        if wipe and srv.data_dir.exists():
            shutil.rmtree(srv.data_dir)
            say(f"{srv.name}: data wiped ({srv.data_dir})")


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


def resident_memory_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


if __name__ == "__main__":  # pragma: no cover - `fanout stack` is the entry point
    sys.exit("use: fanout stack up|down|status|logs")
