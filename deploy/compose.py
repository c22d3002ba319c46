"""The compose deployment's set-up: the compose CLI, and the .env that docker-compose.yml requires.

`docker compose` (the v2 CLI) is used where docker has it. Where not (Debian's docker.io ships none, and
its docker-compose 1.29 rejects the file's `depends_on.required`), the CLI is built once from its Go
module and kept with the jars, in the cache dir's bin/.

`init` writes .env (mode 0600) beside docker-compose.yml: a generated password for every login the
file asks for, unless the user set it already (in .env or the environment); the images
(deploy/images.py); the cluster profile's values for `--nodes 3`; the dashboard profile where Grafana's
image can be pulled. Values already in .env are kept, so passwords never change under a running cluster.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from deploy import images
from deploy.errors import StackError
from deploy.servers import DEPLOY_DIR, PROJECT_ROOT, project_path
from fanout.settings import Settings

COMPOSE_MODULE = "github.com/docker/compose/v5"
COMPOSE_VERSION = "v5.6.0"
COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yml"
CLUSTER_ENV = DEPLOY_DIR / "cluster.env"
# Every login of docker-compose.yml, generated unless set: Kafka users, Cassandra roles, Grafana's admin.
PASSWORDS = ("FANOUT_KAFKA_ADMIN_PASSWORD", "FANOUT_KAFKA_SASL_PASSWORD", "FANOUT_KAFKA_READER_PASSWORD",
             "FANOUT_KAFKA_WORKER_PASSWORD",
             "FANOUT_CASSANDRA_ADMIN_PASSWORD", "FANOUT_CASSANDRA_PASSWORD", "FANOUT_CASSANDRA_WORKER_PASSWORD",
             "FANOUT_CASSANDRA_INGEST_PASSWORD", "FANOUT_CASSANDRA_READER_PASSWORD", "GRAFANA_ADMIN_PASSWORD")
# The users docker-compose.yml defaults to, written into .env too: it is then the deployment's whole login
# sheet (kcat, cqlsh and the tests read it).
USERNAMES = {"FANOUT_KAFKA_ADMIN_USERNAME": "admin", "FANOUT_KAFKA_SASL_USERNAME": "fanout",
             "FANOUT_KAFKA_READER_USERNAME": "fanout-reader",
             "FANOUT_KAFKA_WORKER_USERNAME": "fanout-worker", "FANOUT_CASSANDRA_ADMIN_USERNAME": "admin",
             "FANOUT_CASSANDRA_USERNAME": "fanout", "FANOUT_CASSANDRA_WORKER_USERNAME": "fanout_worker",
             "FANOUT_CASSANDRA_INGEST_USERNAME": "fanout_ingest", "FANOUT_CASSANDRA_READER_USERNAME": "fanout_reader"}
Say = Callable[[str], None]


def compose_command(s: Settings, say: Say) -> list[str]:
    """The compose v2 CLI: `docker compose` if docker has the plugin, else the one built into the cache."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    binary = project_path(s.stack.cache_dir) / "bin" / "docker-compose"
    if not binary.exists():
        _build_compose(binary, say)
    return [str(binary)]


def _build_compose(binary: Path, say: Say) -> None:
    go = shutil.which("go")
    if go is None:
        raise StackError("docker has no compose plugin, and Go (which builds it) is not installed")
    say(f"building the compose CLI {COMPOSE_VERSION} from its Go module (once; about 90 s)")
    module = f"{COMPOSE_MODULE}@{COMPOSE_VERSION}"
    download = subprocess.run([go, "mod", "download", "-json", module], capture_output=True, text=True)
    if download.returncode != 0:
        raise StackError(f"go mod download {module} failed:\n{download.stdout[-2000:]}{download.stderr[-2000:]}")
    source = json.loads(download.stdout)["Dir"]
    binary.parent.mkdir(parents=True, exist_ok=True)
    partial = binary.with_suffix(".partial")
    # `go install module@version` refuses the module's exclude directives; a build inside it does not.
    built = subprocess.run([go, "build", "-o", str(partial), "./cmd"], cwd=source, capture_output=True, text=True)
    if built.returncode != 0:
        raise StackError(f"building the compose CLI failed:\n{built.stderr[-3000:]}")
    partial.replace(binary)


def read_env(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of an env file (comments and blank lines skipped)."""
    if not path.exists():
        return {}
    lines = (line.strip() for line in path.read_text().splitlines())
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#") and "=" in line)


def env_values(existing: Mapping[str, str], environ: Mapping[str, str], nodes: int, chosen: Mapping[str, str],
               dashboard: bool) -> dict[str, str]:
    """What .env holds: the existing values first, then the user's environment, then generated passwords;
    the images and profiles chosen now."""
    values = dict(existing)
    for name, user in USERNAMES.items():
        values.setdefault(name, environ.get(name) or user)
    for name in PASSWORDS:
        values.setdefault(name, environ.get(name) or secrets.token_urlsafe(24))
    if nodes >= 3:
        values.update(read_env(CLUSTER_ENV))
    elif nodes != 1:
        raise StackError("the compose file runs 1 node, or 3 with the cluster profile")
    values.update(chosen)
    profiles = [p for p, on in (("cluster", nodes >= 3), ("dashboard", dashboard)) if on]
    values["COMPOSE_PROFILES"] = ",".join(profiles)
    return values


def write_env(path: Path, values: Mapping[str, str]) -> None:
    """The env file, readable by its owner only (it holds every password of the deployment)."""
    text = "# docker-compose.yml's values, written by `fanout compose init`; keep it secret.\n"
    text += "".join(f"{key}={value}\n" for key, value in values.items())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    path.chmod(0o600)


def init(s: Settings, env_file: Path, nodes: int, mode: str, build: bool, say: Say) -> dict[str, str]:
    """Prepare a compose deployment: the CLI, the images, and `env_file`. Returns what it holds."""
    compose_command(s, say)
    chosen = images.choose(s, mode, say)
    dashboard = mode != "local" and images.pullable(images.GRAFANA_IMAGE, say)
    if not dashboard:
        say(f"Grafana ({images.GRAFANA_IMAGE}) cannot be pulled here and has no local build: the dashboard "
            "profile stays off (Prometheus still runs; deploy/grafana has the dashboard for any Grafana)")
    if build:
        images.build(s, chosen, say)
    values = env_values(read_env(env_file), os.environ, nodes, chosen, dashboard)
    write_env(env_file, values)
    return values


# Host ports of a compose project: the compose file's variables that name them.
PUBLISHED_PORTS = ("FANOUT_KAFKA_PORT", "KAFKA_2_PORT", "KAFKA_3_PORT", "FANOUT_CASSANDRA_PORT",
                   "FANOUT_READ_API_PORT", "FANOUT_INGEST_API_PORT", "FANOUT_PROMETHEUS_PORT")


@dataclass
class Project:
    """A compose project of its own (name, env file) and what a client on the host reaches of it."""

    name: str
    command: list[str]  # the compose CLI with this project's name and env file
    values: dict[str, str]  # its env file
    nodes: int

    def compose(self, *args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([*self.command, *args], capture_output=True, text=True, cwd=PROJECT_ROOT,
                              timeout=timeout)
        if check and proc.returncode != 0:
            raise StackError(f"compose {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
        return proc

    def up(self, *services: str, scale: Mapping[str, int] | None = None) -> None:
        """Bring `services` (default: all) up and wait until each is healthy (or has run, for migrate)."""
        scales = [arg for name, n in (scale or {}).items() for arg in ("--scale", f"{name}={n}")]
        try:
            self.compose("up", "-d", "--wait", "--wait-timeout", "600", *scales, *services)
        except StackError as exc:
            raise StackError(f"{exc}\n{self.exited_logs()}") from exc

    def exited_logs(self, lines: int = 40) -> str:
        """The last log lines of every container that has exited (a one-shot that failed says why there)."""
        listed = self.compose("ps", "-a", "--status", "exited", "--format", "{{.Service}}", check=False).stdout
        exited = sorted(set(listed.split()))
        if not exited:
            return "no container has exited"
        logs = self.compose("logs", "--no-color", "--tail", str(lines), *exited, check=False)
        return f"last {lines} log lines of {', '.join(exited)}:\n{logs.stdout}{logs.stderr}"

    def down(self) -> None:
        """Stop and remove every container, network and volume of the project."""
        self.compose("down", "-v", "--remove-orphans", "--timeout", "20", check=False)

    def container(self, service: str, index: int = 1) -> str:
        return f"{self.name}-{service}-{index}"

    def host_settings(self, secret_file: Path) -> Settings:
        """Settings of a client on the host: the published ports, every user of the env file, the tokens'
        secret copied to `secret_file` (`copy_token_secret`)."""
        env = {key: value for key, value in self.values.items() if key.startswith("FANOUT_")}
        env |= {"FANOUT_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{self.values.get('FANOUT_KAFKA_PORT', '9092')}",
                "FANOUT_CASSANDRA_HOSTS": "127.0.0.1", "FANOUT_NODES": str(self.nodes),
                "FANOUT_JWT_SECRET_FILE": str(secret_file)}
        return Settings.load(env=env)

    def copy_token_secret(self, dest: Path) -> None:
        """The HS256 secret the containers share (made by the first that needed it), for minting tokens."""
        secret = self.compose("exec", "-T", "read-api", "cat", "/var/lib/fanout-auth/jwt-hs256.secret").stdout
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secret)


def project(s: Settings, name: str, workdir: Path, nodes: int, mode: str, ports: list[int], say: Say) -> Project:
    """A compose project `name`, its env file in `workdir` (images built as `init` does), with the host
    ports `ports` (one per PUBLISHED_PORTS) instead of the defaults, so it runs beside anything else."""
    env_file = workdir / ".env"
    values = init(s, env_file, nodes, mode, build=True, say=say)
    values |= dict(zip(PUBLISHED_PORTS, map(str, ports), strict=True))
    write_env(env_file, values)
    return Project(name, [*compose_command(s, say), "-p", name, "--env-file", str(env_file)], values, nodes)
