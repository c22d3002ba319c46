"""The compose deployment for real: docker-compose.yml up on this machine's Docker engine, with the images
`fanout compose init` chooses (official where they can be pulled, else the local builds), reached only
through the ports it publishes on 127.0.0.1. FANOUT_DOCKER_NODES=3 runs the cluster profile (3 brokers,
3 Cassandra nodes, each its own container). One deployment per run (project fanout-test-<N>n, ports of
its own), taken down with its volumes at the end."""

from __future__ import annotations

import functools
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from cassandra import ConsistencyLevel
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, Session
from cassandra.policies import WhiteListRoundRobinPolicy
from confluent_kafka import KafkaException
from faults.rig import REPORT, RESULTS
from ports import free_ports

from deploy import compose
from fanout.api.auth import Tokens
from fanout.lag import wait_until_drained
from fanout.settings import Settings

NODES = int(os.environ.get("FANOUT_DOCKER_NODES", "1"))
IMAGES = os.environ.get("FANOUT_COMPOSE_IMAGES", "auto")  # auto, official or local (deploy/images.py)


@dataclass
class ComposeDeployment:
    """A running compose project, and the host's view of it."""

    project: compose.Project
    settings: Settings  # the published ports, the deployment's users and its token secret

    @property
    def nodes(self) -> int:
        return self.project.nodes

    @functools.cached_property
    def tokens(self) -> Tokens:
        return Tokens(self.settings)

    def compose(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.project.compose(*args)

    def container(self, service: str, index: int = 1) -> str:
        return self.project.container(service, index)

    def kill(self, service: str, index: int = 1) -> None:
        """`docker kill` (SIGKILL) one container of a service."""
        subprocess.run(["docker", "kill", self.container(service, index)], check=True, capture_output=True)

    def url(self, api: str) -> str:
        port = self.settings.read_api_port if api == "read" else self.settings.ingest_api_port
        return f"http://127.0.0.1:{port}"

    def cassandra(self) -> tuple[Cluster, Session]:
        """A session as the Cassandra admin, through the published port only (no other node is dialled),
        reading at QUORUM: a node just restarted may not have every row yet (hints replay after)."""
        s = self.settings
        profile = ExecutionProfile(load_balancing_policy=WhiteListRoundRobinPolicy(["127.0.0.1"]),
                                   consistency_level=ConsistencyLevel.QUORUM, request_timeout=120)
        cluster = Cluster(["127.0.0.1"], port=s.cassandra_port, protocol_version=4,
                          execution_profiles={EXEC_PROFILE_DEFAULT: profile},
                          auth_provider=PlainTextAuthProvider(s.cassandra_admin_username, s.cassandra_admin_password))
        return cluster, cluster.connect()

    def drain(self, timeout: float = 600) -> float:
        """Wait until the worker group has no lag; seconds waited. Just after a broker restarted, Kafka may
        not know the lag yet ("leader high watermark is not caught up"): asked again."""
        started = time.monotonic()
        while True:
            try:
                return wait_until_drained(self.settings, timeout=timeout) + time.monotonic() - started
            except KafkaException as exc:
                if time.monotonic() - started > timeout:
                    raise
                print(f"[compose] lag not known yet: {exc}", flush=True)
                time.sleep(1)


@pytest.fixture(scope="session")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeDeployment]:
    tmp = tmp_path_factory.mktemp("compose")
    started = time.monotonic()
    project = compose.project(Settings.load(), f"fanout-test-{NODES}n", tmp, NODES, IMAGES,
                              free_ports(len(compose.PUBLISHED_PORTS)), lambda m: print(f"[compose] {m}", flush=True))
    print(f"[compose] images ready in {time.monotonic() - started:.0f}s", flush=True)
    project.down()  # what an interrupted run of the same project left
    try:
        started = time.monotonic()
        project.up()
        print(f"[compose] {project.name} healthy in {time.monotonic() - started:.0f}s", flush=True)
        project.copy_token_secret(tmp / "jwt.secret")
        yield ComposeDeployment(project, project.host_settings(tmp / "jwt.secret"))
    finally:
        logs = project.compose("logs", "--no-color", "--tail", "60", check=False)
        (tmp / "compose.log").write_text(logs.stdout + logs.stderr)
        print(f"[compose] last log lines of every container: {tmp / 'compose.log'}", flush=True)
        project.down()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as client:
        yield client


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not RESULTS:
        return
    terminalreporter.section(f"compose faults report (every run is also appended to {REPORT})")
    for r in RESULTS:
        terminalreporter.write_line(f"{r['fault']:<70} {r['times']:>2} {r['nodes']:>5} {r['expected']:>9} "
                                    f"{r['missing']:>7} {r['extra']:>5} {r['drain_seconds']:>7}")


def feed(http: httpx.Client, run: ComposeDeployment, user: int) -> list[int]:
    """Every post id of `user`'s feed, paged through the read API with the user's own token."""
    items: list[int] = []
    cursor: Any = None
    while True:
        params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        resp = http.get(f"{run.url('read')}/v1/feed", params=params, headers=run.tokens.headers(user))
        resp.raise_for_status()
        body = resp.json()
        items += [item["post_id"] for item in body["items"]]
        cursor = body.get("next_cursor")
        if not cursor:
            return items
