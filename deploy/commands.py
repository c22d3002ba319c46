"""How each server of the local stack is started: its config files (from deploy/templates) and command line.

A cluster (`--nodes N`) differs only in what the templates are given: node ids, the controller quorum of
every broker, replication factors, each Cassandra node's token and its seeds.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from string import Template

from deploy import server_auth
from deploy.errors import StackError
from deploy.servers import TEMPLATES, Server, java_binary, resolve_classpath

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



def _render(template: str, dest: Path, **values: object) -> Path:
    text = Template((TEMPLATES / template).read_text()).substitute(**{k: str(v) for k, v in values.items()})
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(text)
    return dest


def _kafka_command(srv: Server, say: Callable[[str], None]) -> list[str]:
    s = srv.settings
    java = java_binary()
    cp = os.pathsep.join(resolve_classpath(s, "kafka", s.stack.kafka_version, say))
    node = srv.node or 1
    voters = ",".join(f"{i}@{h}:{s.stack.kafka_controller_port}" for i, h in enumerate(s.node_hosts, 1))
    replicas = min(3, s.stack.nodes)
    props = _render("kafka-server.properties", srv.run_dir / "server.properties", host=srv.bind_host,
                    advertised_host=srv.host, port=s.kafka_port, controller_port=s.stack.kafka_controller_port,
                    controller_host=srv.host, data_dir=srv.data_dir, node_id=node, voters=voters, replicas=replicas,
                    min_isr=2 if replicas >= 3 else 1, **server_auth.kafka_template_values(s))
    props.chmod(0o600)  # it holds the admin's password when the stack has credentials
    log4j = _render("kafka-log4j.properties", srv.run_dir / "log4j.properties")
    jvm = [java, f"-Xms{s.stack.kafka_heap}", f"-Xmx{s.stack.kafka_heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
           "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true", f"-Dlog4j.configuration=file:{log4j}",
           f"-Dkafka.logs.dir={srv.log_file.parent}", "-cp", cp]
    if not (srv.data_dir / "meta.properties").exists():
        # KRaft storage is formatted once, every broker of a cluster with the same cluster id.
        fmt = subprocess.run([*jvm, "kafka.tools.StorageTool", "format", f"--cluster-id={_kafka_cluster_id(srv)}",
                              "--config", str(props), "--ignore-formatted", *server_auth.kafka_format_args(s)],
                             capture_output=True, text=True)
        if fmt.returncode != 0:
            raise StackError(f"formatting Kafka storage failed:\n{fmt.stdout}{fmt.stderr}")
    return [*jvm, "kafka.Kafka", str(props)]


def _kafka_cluster_id(srv: Server) -> str:
    """16 random bytes, base64url, not starting with '-'; kept in the state dir for the other brokers."""
    path = srv.state_dir / "kafka-cluster-id"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("A" + base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")[1:])
    return path.read_text().strip()


def _cassandra_command(srv: Server, say: Callable[[str], None]) -> list[str]:
    s = srv.settings
    java = java_binary()
    jars = resolve_classpath(s, "cassandra", s.stack.cassandra_version, say)
    storage = s.stack.cassandra_storage_port
    if srv.node:
        # A fresh cluster: balanced tokens (no token allocation) and no bootstrap streaming, so all nodes
        # start at once; the first two are seeds. A node whose data was wiped alone needs a repair.
        token = -(2**63) + (srv.node - 1) * (2**64 // s.stack.nodes)
        seeds = ",".join(f"{h}:{storage}" for h in s.node_hosts[:2])
        cluster = f"initial_token: {token}\nauto_bootstrap: false"
    else:  # alone, its own address is the seed (any other makes it try to bootstrap and wait)
        seeds, cluster = f"{srv.host}:{storage}", ""
    yaml = _render("cassandra.yaml", srv.run_dir / "cassandra.yaml", host=srv.bind_host, port=s.cassandra_port,
                   storage_port=storage, seeds=seeds, cluster=cluster)
    logback = _render("cassandra-logback.xml", srv.run_dir / "logback.xml")
    jamm = next((j for j in jars if Path(j).name.startswith("jamm-")), None)
    return [
        java, f"-Xms{s.stack.cassandra_heap}", f"-Xmx{s.stack.cassandra_heap}",
        *cassandra_jvm_options(jamm, data=srv.data_dir, logs=srv.log_file.parent, logback=logback,
                               tmp=srv.run_dir / "tmp"),
        f"-Dcassandra.config=file://{yaml}", *server_auth.cassandra_flags(s),
        "-cp", os.pathsep.join(jars), "org.apache.cassandra.service.CassandraDaemon",
    ]


def cassandra_jvm_options(jamm: str | None, data: Path | str, logs: Path | str, logback: Path | str,
                          tmp: Path | str) -> list[str]:
    """Cassandra's JVM flags but heap, config and classpath: the local stack's, and the local image's
    (deploy/images.py writes them into its jvm.options)."""
    return [
        "-XX:+UseG1GC", "-Xss256k", *CASSANDRA_JAVA17_FLAGS,
        *([f"-javaagent:{jamm}"] if jamm else []),
        "-Djdk.attach.allowAttachSelf=true", "-Djava.net.preferIPv4Stack=true", "-Dcassandra-foreground=yes",
        f"-Dcassandra.storagedir={data}", f"-Dcassandra.logdir={logs}",
        f"-Dlogback.configurationFile={logback}", "-Dcassandra.skip_wait_for_gossip_to_settle=0",
        # Never -Dcassandra.unsafesystem: it keeps schema changes in memtables only, so a kill -9 before
        # the next clean stop loses every table created since, with its data.
        "-XX:+ExitOnOutOfMemoryError", f"-Djna.tmpdir={tmp}",
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
                  worker_metrics_port=s.worker_metrics_port, notifier_metrics_port=s.notifier_metrics_port,
                  read_api_port=s.read_api_port,
                  ingest_api_port=s.ingest_api_port)
    return [binary, f"--config.file={cfg}", f"--storage.tsdb.path={srv.data_dir}",
            f"--web.listen-address={s.host}:{s.stack.prometheus_port}", "--storage.tsdb.retention.time=2d"]


COMMANDS: dict[str, Callable[[Server, Callable[[str], None]], list[str]]] = {
    "kafka": _kafka_command, "cassandra": _cassandra_command, "prometheus": _prometheus_command,
}
