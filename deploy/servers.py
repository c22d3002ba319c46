"""What the local stack runs: Kafka, Cassandra and Prometheus (or N brokers and N nodes), where, and readiness.

`deploy.stack` starts and stops these servers, `deploy.commands` writes their configs and command lines;
this module only describes them. Relative state and cache
directories (the defaults, `.fanout/state` and `.fanout/cache`) are anchored at the project root, so every
command finds the same stack from any working directory.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from deploy.errors import StackError
from fanout.settings import PROJECT_ROOT, Settings, project_path

DEPLOY_DIR = Path(__file__).resolve().parent
TEMPLATES = DEPLOY_DIR / "templates"
__all__ = ["DEPLOY_DIR", "PROJECT_ROOT", "TEMPLATES", "project_path"]


@dataclass
class Server:
    name: str  # kafka, cassandra, prometheus; kafka-2, cassandra-3, ... in a cluster
    ports: tuple[int, ...]
    ready_timeout: float
    settings: Settings
    kind: str = ""  # kafka, cassandra or prometheus; the name when empty
    node: int = 0  # 1..N in a cluster, 0 alone

    def __post_init__(self) -> None:
        self.kind = self.kind or self.name

    @property
    def state_dir(self) -> Path:
        return project_path(self.settings.stack.state_dir)

    @property
    def run_dir(self) -> Path:
        return self.state_dir / self.name

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "logs" / f"{self.name}.log"

    @property
    def data_dir(self) -> Path:
        return self.run_dir / "data"

    @property
    def host(self) -> str:
        """Where it listens and clients reach it: node i of a cluster on 127.0.0.i."""
        return self.settings.node_hosts[self.node - 1] if self.node else self.settings.client_host

    @property
    def bind_host(self) -> str:
        return self.host if self.node else self.settings.host

    @property
    def address(self) -> str:
        return f"{self.bind_host}:{self.ports[0]}"


# ---------------------------------------------------------------------------------------------------
# Jars from Maven Central


def resolve_classpath(s: Settings, name: str, version: str, say: Callable[[str], None]) -> list[str]:
    """The server's runtime classpath, resolved with mvn on first use and cached by version."""
    cache = project_path(s.stack.cache_dir)
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
# The servers of a stack: one of each, or N brokers and N nodes on 127.0.0.1..N (`--nodes N`)

MAX_NODES = 9


def servers(s: Settings) -> list[Server]:
    n = s.stack.nodes
    if n == 1:
        return [
            Server("kafka", (s.kafka_port, s.stack.kafka_controller_port), 120.0, s),
            Server("cassandra", (s.cassandra_port, s.stack.cassandra_storage_port), 240.0, s),
            Server("prometheus", (s.stack.prometheus_port,), 60.0, s),
        ]
    if not 3 <= n <= MAX_NODES:
        raise StackError(f"--nodes is 1, or 3 to {MAX_NODES} (a quorum of 2 nodes cannot lose one); got {n}")
    if s.client_host != "127.0.0.1":
        raise StackError(f"a local cluster listens on 127.0.0.1..127.0.0.{n}; FANOUT_HOST must be 127.0.0.1")
    kafka = [Server(f"kafka-{i}", (s.kafka_port, s.stack.kafka_controller_port), 180.0, s, "kafka", i)
             for i in range(1, n + 1)]
    cassandra = [Server(f"cassandra-{i}", (s.cassandra_port, s.stack.cassandra_storage_port), 300.0, s,
                        "cassandra", i) for i in range(1, n + 1)]
    return [*kafka, *cassandra, Server("prometheus", (s.stack.prometheus_port,), 60.0, s)]


def server_by_name(s: Settings, name: str) -> Server:
    every = servers(s)
    for srv in every:
        if srv.name == name:
            return srv
    raise StackError(f"unknown server {name!r}; one of: {', '.join(srv.name for srv in every)}")


def is_ready(srv: Server) -> bool:
    """Real readiness: a Kafka metadata answer listing every broker, a CQL answer from this very node that
    knows every peer, Prometheus /-/ready. Clients connect to `srv.host` (never a wildcard address), as the
    stack's admin when it has credentials."""
    from deploy import server_auth

    s = srv.settings
    if not port_open(srv.host, srv.ports[0]):
        return False
    try:
        if srv.kind == "kafka":
            from confluent_kafka.admin import AdminClient

            config = {**server_auth.kafka_admin_config(s), "bootstrap.servers": f"{srv.host}:{srv.ports[0]}"}
            brokers = AdminClient(config).list_topics(timeout=3).brokers
            return len(brokers) >= s.stack.nodes
        if srv.kind == "cassandra":
            return _cassandra_answers(srv, server_auth.cassandra_logins(s))
        with urllib.request.urlopen(f"http://{srv.host}:{s.stack.prometheus_port}/-/ready", timeout=3) as r:
            return bool(r.status == 200)
    except Exception:
        return False


def _cassandra_answers(srv: Server, logins: list[tuple[str, str]]) -> bool:
    """This node answers a query (with the first of `logins` it accepts) and knows every peer."""
    from cassandra import AuthenticationFailed
    from cassandra.auth import PlainTextAuthProvider
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable
    from cassandra.policies import WhiteListRoundRobinPolicy

    only_this = ExecutionProfile(load_balancing_policy=WhiteListRoundRobinPolicy([srv.host]))
    cluster = Cluster([srv.host], port=srv.ports[0], protocol_version=4, connect_timeout=3,
                      execution_profiles={EXEC_PROFILE_DEFAULT: only_this},
                      auth_provider=PlainTextAuthProvider(*logins[0]) if logins else None)
    try:
        try:
            session = cluster.connect()
        except NoHostAvailable as exc:  # a login refused: the next one (the default superuser of a new node)
            if len(logins) > 1 and all(isinstance(e, AuthenticationFailed) for e in exc.errors.values()):
                return _cassandra_answers(srv, logins[1:])
            raise
        if session.execute("SELECT release_version FROM system.local").one() is None:
            return False
        peers = list(session.execute("SELECT peer FROM system.peers_v2"))
        return len(peers) >= srv.settings.stack.nodes - 1
    finally:
        cluster.shutdown()


def port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0
