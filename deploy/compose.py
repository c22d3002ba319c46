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
from pathlib import Path

from deploy import images
from deploy.servers import DEPLOY_DIR, PROJECT_ROOT, StackError, project_path
from fanout.settings import Settings

COMPOSE_MODULE = "github.com/docker/compose/v5"
COMPOSE_VERSION = "v5.6.0"
COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yml"
CLUSTER_ENV = DEPLOY_DIR / "cluster.env"
# Every login of docker-compose.yml, generated unless set: the Kafka users, the Cassandra roles, Grafana's admin.
PASSWORDS = ("FANOUT_KAFKA_ADMIN_PASSWORD", "FANOUT_KAFKA_SASL_PASSWORD", "FANOUT_KAFKA_WORKER_PASSWORD",
             "FANOUT_CASSANDRA_ADMIN_PASSWORD", "FANOUT_CASSANDRA_PASSWORD", "GRAFANA_ADMIN_PASSWORD")
# The users docker-compose.yml defaults to, written into .env too: it is then the deployment's whole login
# sheet (kcat, cqlsh and the tests read it).
USERNAMES = {"FANOUT_KAFKA_ADMIN_USERNAME": "admin", "FANOUT_KAFKA_SASL_USERNAME": "fanout",
             "FANOUT_KAFKA_WORKER_USERNAME": "fanout-worker", "FANOUT_CASSANDRA_ADMIN_USERNAME": "admin",
             "FANOUT_CASSANDRA_USERNAME": "fanout"}
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
