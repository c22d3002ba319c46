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
from pathlib import Path
from typing import Any

import httpx
import pytest
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import Cluster, Session
from cassandra.policies import WhiteListRoundRobinPolicy
from faults.rig import REPORT, RESULTS
from ports import free_ports

from deploy import compose
from fanout.auth import Tokens
from fanout.lag import wait_until_drained
from fanout.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
NODES = int(os.environ.get("FANOUT_DOCKER_NODES", "1"))
IMAGES = os.environ.get("FANOUT_COMPOSE_IMAGES", "auto")  # auto, official or local (deploy/images.py)
PUBLISHED = ("FANOUT_KAFKA_PORT", "KAFKA_2_PORT", "KAFKA_3_PORT", "FANOUT_CASSANDRA_PORT", "FANOUT_READ_API_PORT",
             "FANOUT_INGEST_API_PORT", "FANOUT_PROMETHEUS_PORT")


@dataclass
class ComposeDeployment:
    """A running compose project and what the host reaches of it."""

    project: str
    command: list[str]  # the compose CLI with this project's name and env file
    values: dict[str, str]  # its env file
    settings: Settings  # the host's view: published ports, the deployment's users and its token secret
    nodes: int

    @functools.cached_property
    def tokens(self) -> Tokens:
        return Tokens(self.settings)

    def compose(self, *args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([*self.command, *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(f"compose {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
        return proc

    def container(self, service: str, index: int = 1) -> str:
        return f"{self.project}-{service}-{index}"

    def kill(self, service: str, index: int = 1) -> None:
        """`docker kill` (SIGKILL) one container of a service."""
        subprocess.run(["docker", "kill", self.container(service, index)], check=True, capture_output=True)

    def up(self, *services: str, scale: dict[str, int] | None = None) -> None:
        """Bring `services` (default: all) up again and wait until healthy."""
        scales = [arg for name, n in (scale or {}).items() for arg in ("--scale", f"{name}={n}")]
        self.compose("up", "-d", "--wait", "--wait-timeout", "600", *scales, *services)

    def url(self, api: str) -> str:
        port = self.settings.read_api_port if api == "read" else self.settings.ingest_api_port
        return f"http://127.0.0.1:{port}"

    def cassandra(self) -> tuple[Cluster, Session]:
        """A session as the Cassandra admin, through the published port only (no other node is dialled)."""
        s = self.settings
        cluster = Cluster(["127.0.0.1"], port=s.cassandra_port, protocol_version=4,
                          load_balancing_policy=WhiteListRoundRobinPolicy(["127.0.0.1"]),
                          auth_provider=PlainTextAuthProvider(s.cassandra_admin_username, s.cassandra_admin_password))
        return cluster, cluster.connect()

    def drain(self, timeout: float = 600) -> float:
        return wait_until_drained(self.settings, timeout=timeout)


def host_settings(values: dict[str, str], nodes: int, secret: Path) -> Settings:
    """Settings for clients on the host: the published ports, every user of the deployment."""
    env = {key: value for key, value in values.items() if key.startswith("FANOUT_")}
    env |= {
        "FANOUT_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{values['FANOUT_KAFKA_PORT']}",
        "FANOUT_CASSANDRA_HOSTS": "127.0.0.1",
        "FANOUT_NODES": str(nodes),
        "FANOUT_JWT_SECRET_FILE": str(secret),
    }
    return Settings.load(env=env)


@pytest.fixture(scope="session")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeDeployment]:
    tmp = tmp_path_factory.mktemp("compose")
    env_file = tmp / ".env"
    s = Settings.load()
    started = time.monotonic()
    values = compose.init(s, env_file, NODES, IMAGES, build=True, say=lambda m: print(f"[compose] {m}", flush=True))
    print(f"[compose] images ready in {time.monotonic() - started:.0f}s", flush=True)
    values |= dict(zip(PUBLISHED, map(str, free_ports(len(PUBLISHED))), strict=True))
    compose.write_env(env_file, values)
    project = f"fanout-test-{NODES}n"
    command = [*compose.compose_command(s, print), "-p", project, "--env-file", str(env_file)]
    run = ComposeDeployment(project, command, values, host_settings(values, NODES, tmp / "jwt.secret"), NODES)
    run.compose("down", "-v", "--remove-orphans", check=False)  # what a run killed before this one left
    try:
        started = time.monotonic()
        run.up()
        print(f"[compose] {project} healthy in {time.monotonic() - started:.0f}s", flush=True)
        secret = run.compose("exec", "-T", "read-api", "cat", "/var/lib/fanout-auth/jwt-hs256.secret").stdout
        (tmp / "jwt.secret").write_text(secret)
        (tmp / "jwt.secret").chmod(0o600)
        yield run
    finally:
        logs = run.compose("logs", "--no-color", "--tail", "60", check=False)
        (tmp / "compose.log").write_text(logs.stdout + logs.stderr)
        print(f"[compose] last log lines of every container: {tmp / 'compose.log'}", flush=True)
        run.compose("down", "-v", "--remove-orphans", "--timeout", "20", check=False)


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
