"""What the local stack runs: Kafka, Cassandra and Prometheus, their command lines, config files and readiness.

`deploy.stack` starts and stops these servers; this module only describes them. Relative state and cache
directories (the defaults, `.fanout/state` and `.fanout/cache`) are anchored at the project root, so every
command finds the same stack from any working directory.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from string import Template

from fanout.settings import Settings

DEPLOY_DIR = Path(__file__).resolve().parent
TEMPLATES = DEPLOY_DIR / "templates"
PROJECT_ROOT = DEPLOY_DIR.parent  # the checkout: the directory with pyproject.toml


def project_path(path: Path) -> Path:
    """An absolute `path`: a relative one is taken from the project root, not the working directory.

    Installed without a checkout (no pyproject.toml above deploy/), the working directory is the anchor.
    """
    if path.is_absolute():
        return path.resolve()
    root = PROJECT_ROOT if (PROJECT_ROOT / "pyproject.toml").exists() else Path.cwd()
    return (root / path).resolve()


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
        """Where clients reach it."""
        return self.settings.client_host

    @property
    def address(self) -> str:
        return f"{self.settings.host}:{self.ports[0]}"


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
# Server definitions: config files, command line, readiness


def _render(template: str, dest: Path, **values: object) -> Path:
    text = Template((TEMPLATES / template).read_text()).substitute(**{k: str(v) for k, v in values.items()})
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(text)
    return dest


def servers(s: Settings) -> list[Server]:
    return [
        Server("kafka", (s.kafka_port, s.stack.kafka_controller_port), 120.0, s),
        Server("cassandra", (s.cassandra_port, s.stack.cassandra_storage_port), 240.0, s),
        Server("prometheus", (s.stack.prometheus_port,), 60.0, s),
    ]


def server_by_name(s: Settings, name: str) -> Server:
    for srv in servers(s):
        if srv.name == name:
            return srv
    raise StackError(f"unknown server {name!r}; one of: kafka, cassandra, prometheus")


def _kafka_command(srv: Server, say: Callable[[str], None]) -> list[str]:
    s = srv.settings
    java = java_binary()
    cp = os.pathsep.join(resolve_classpath(s, "kafka", s.stack.kafka_version, say))
    props = _render("kafka-server.properties", srv.run_dir / "server.properties", host=s.host,
                    port=s.kafka_port, controller_port=s.stack.kafka_controller_port, data_dir=srv.data_dir)
    log4j = _render("kafka-log4j.properties", srv.run_dir / "log4j.properties")
    jvm = [java, f"-Xms{s.stack.kafka_heap}", f"-Xmx{s.stack.kafka_heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
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
    jars = resolve_classpath(s, "cassandra", s.stack.cassandra_version, say)
    yaml = _render("cassandra.yaml", srv.run_dir / "cassandra.yaml", host=s.host,
                   port=s.cassandra_port, storage_port=s.stack.cassandra_storage_port)
    logback = _render("cassandra-logback.xml", srv.run_dir / "logback.xml")
    jamm = [j for j in jars if Path(j).name.startswith("jamm-")]
    return [
        java, f"-Xms{s.stack.cassandra_heap}", f"-Xmx{s.stack.cassandra_heap}", "-XX:+UseG1GC", "-Xss256k",
        *CASSANDRA_JAVA17_FLAGS,
        *([f"-javaagent:{jamm[0]}"] if jamm else []),
        "-Djdk.attach.allowAttachSelf=true", "-Djava.net.preferIPv4Stack=true",
        f"-Dcassandra.config=file://{yaml}", "-Dcassandra-foreground=yes",
        f"-Dcassandra.storagedir={srv.data_dir}", f"-Dcassandra.logdir={srv.log_file.parent}",
        f"-Dlogback.configurationFile={logback}", "-Dcassandra.skip_wait_for_gossip_to_settle=0",
        # Never -Dcassandra.unsafesystem: it keeps schema changes in memtables only, so a kill -9 before
        # the next clean stop lost every table created since, with its data (issue 11).
        "-XX:+ExitOnOutOfMemoryError",
        f"-Djna.tmpdir={srv.run_dir / 'tmp'}",
        "-cp", os.pathsep.join(jars), "org.apache.cassandra.service.CassandraDaemon",
    ]


def _prometheus_command(srv: Server, say: Callable[[str], None]) -> list[str]:
    s = srv.settings
    path = s.stack.prometheus_bin
    binary = shutil.which(path) or (path if Path(path).exists() else None)
    if binary is None:
        raise StackError(f"Prometheus ({s.stack.prometheus_bin}) is not installed "
                         "(Debian: apt-get install prometheus; .ci/run installs it).")
    # Scrape targets are addresses to connect to, so a wildcard bind address becomes the client host.
    cfg = _render("prometheus.yml", srv.run_dir / "prometheus.yml", host=s.client_host,
                  scrape_interval=s.stack.scrape_interval, prometheus_port=s.stack.prometheus_port,
                  worker_metrics_port=s.worker_metrics_port, read_api_port=s.read_api_port,
                  ingest_api_port=s.ingest_api_port)
    return [binary, f"--config.file={cfg}", f"--storage.tsdb.path={srv.data_dir}",
            f"--web.listen-address={s.host}:{s.stack.prometheus_port}", "--storage.tsdb.retention.time=2d"]


COMMANDS: dict[str, Callable[[Server, Callable[[str], None]], list[str]]] = {
    "kafka": _kafka_command, "cassandra": _cassandra_command, "prometheus": _prometheus_command,
}


def is_ready(srv: Server) -> bool:
    """Real readiness: a Kafka metadata answer, a CQL query answer, Prometheus /-/ready.

    Clients connect to `client_host` (a wildcard bind address such as 0.0.0.0 is not an address).
    """
    s = srv.settings
    if not port_open(s.client_host, srv.ports[0]):
        return False
    try:
        if srv.name == "kafka":
            from confluent_kafka.admin import AdminClient

            AdminClient({"bootstrap.servers": s.kafka_bootstrap}).list_topics(timeout=3)
            return True
        if srv.name == "cassandra":
            from cassandra.cluster import Cluster

            cluster = Cluster(s.cassandra_contact_points, port=s.cassandra_port, protocol_version=4,
                              connect_timeout=3)
            try:
                row = cluster.connect().execute("SELECT release_version FROM system.local").one()
                return row is not None
            finally:
                cluster.shutdown()
        with urllib.request.urlopen(f"http://{s.client_host}:{s.stack.prometheus_port}/-/ready", timeout=3) as r:
            return bool(r.status == 200)
    except Exception:
        return False


def port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0
