"""The images docker-compose.yml runs: the official ones where they can be pulled, else builds of the same
servers from what a machine without an image registry reaches.

- A Debian base, made with mmdebstrap (minbase bookworm) and imported into docker.
- Kafka and Cassandra: that base, Debian's OpenJDK 17 and the Maven Central jars `fanout stack up`
  resolves (deploy/images/kafka, deploy/images/cassandra), with the local stack's configs and JVM flags.
- Prometheus: Debian's package, the local stack's server.
- The project's image: deploy/Dockerfile on the official python:3.11-slim, or on the Debian base.
Grafana has no such build: where its image cannot be pulled, the compose file's dashboard profile stays off.

Each build's context is staged under the jar cache (.fanout/cache/images/NAME): the jars hard-linked from
the Maven cache, the templates, and the host's CA bundle for pip, which only a build stage sees.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from deploy import commands
from deploy.errors import StackError
from deploy.servers import DEPLOY_DIR, PROJECT_ROOT, TEMPLATES, project_path, resolve_classpath
from fanout.settings import Settings

IMAGES_DIR = DEPLOY_DIR / "images"
BASE_IMAGE = "fanout-local/debian:bookworm"
PROJECT_IMAGE = "fanout:local"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
Say = Callable[[str], None]


@dataclass(frozen=True)
class ServerImage:
    """One server of the compose file: the variable that names its image, the official image, the local one."""

    variable: str
    official: str
    local: str


def server_images(s: Settings) -> list[ServerImage]:
    """The compose file's server images (docker-compose.yml's defaults are the official ones)."""
    return [
        ServerImage("KAFKA_IMAGE", f"apache/kafka:{s.stack.kafka_version}",
                    f"fanout-local/kafka:{s.stack.kafka_version}"),
        ServerImage("CASSANDRA_IMAGE", f"cassandra:{s.stack.cassandra_version}",
                    f"fanout-local/cassandra:{s.stack.cassandra_version}"),
        # 2.x: the same config semantics as Debian's Prometheus (2.42), which the local build runs.
        ServerImage("PROMETHEUS_IMAGE", "prom/prometheus:v2.53.4", "fanout-local/prometheus:2"),
    ]


PYTHON_BASE = ServerImage("PYTHON_BASE_IMAGE", "python:3.11-slim", BASE_IMAGE)
GRAFANA_IMAGE = "grafana/grafana:11.6.1"


def docker(*args: str, check: bool = True, quiet: bool = False) -> subprocess.CompletedProcess[str]:
    """`docker ARGS`; a failure with `check` is a StackError carrying the output's tail."""
    if shutil.which("docker") is None:
        raise StackError("docker is not installed (Debian: apt-get install docker.io, then start dockerd)")
    proc = subprocess.run(["docker", *args], text=True, capture_output=quiet or check)
    if check and proc.returncode != 0:
        tail = "\n".join(((proc.stdout or "") + (proc.stderr or "")).strip().splitlines()[-20:])
        raise StackError(f"docker {' '.join(args[:2])} failed (exit {proc.returncode}):\n{tail}")
    return proc


def have_image(name: str) -> bool:
    return docker("image", "inspect", name, check=False, quiet=True).returncode == 0


def pullable(name: str, say: Say) -> bool:
    """Whether the official image is here or can be pulled now (a refused pull answers at once)."""
    if have_image(name):
        return True
    say(f"pulling {name}")
    ok = docker("pull", "--quiet", name, check=False, quiet=True).returncode == 0
    if not ok:
        say(f"{name} cannot be pulled here")
    return ok


def choose(s: Settings, mode: str, say: Say) -> dict[str, str]:
    """The image of each server and the project's base: `official`, `local`, or `auto` (official where it
    can be pulled, local where not). Returns the compose variables naming them."""
    if mode not in ("auto", "official", "local"):
        raise StackError(f"images must be auto, official or local, not {mode!r}")
    chosen = {}
    for image in [*server_images(s), PYTHON_BASE]:
        use_official = mode == "official" or (mode == "auto" and pullable(image.official, say))
        chosen[image.variable] = image.official if use_official else image.local
    return chosen


def build(s: Settings, chosen: dict[str, str], say: Say) -> None:
    """Build every local image that `chosen` names, and the project's image on its base."""
    local = {image.local: image for image in server_images(s)}
    wanted = [name for name in chosen.values() if name in local or name == BASE_IMAGE]
    if wanted:
        base_image(say)
    for name in wanted:
        if name in local:
            _build_server(s, local[name], say)
    _build_project(chosen[PYTHON_BASE.variable], say)


def base_image(say: Say) -> None:
    """The Debian base (minbase bookworm with CA certificates), made once with mmdebstrap."""
    if have_image(BASE_IMAGE):
        return
    if shutil.which("mmdebstrap") is None:
        raise StackError("mmdebstrap is not installed; it makes the Debian base of the local images "
                         "(Debian: apt-get install mmdebstrap)")
    say(f"making {BASE_IMAGE} with mmdebstrap (once; about a minute)")
    with tempfile.TemporaryDirectory() as tmp:
        tarball = Path(tmp) / "base.tar"
        proc = subprocess.run(["mmdebstrap", "--variant=minbase", "--include=ca-certificates", "bookworm",
                               str(tarball)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise StackError(f"mmdebstrap failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
        docker("import", str(tarball), BASE_IMAGE, quiet=True)


def _build_server(s: Settings, image: ServerImage, say: Say) -> None:
    kind = image.variable.removesuffix("_IMAGE").lower()
    context = project_path(s.stack.cache_dir) / "images" / kind
    if context.exists():
        shutil.rmtree(context)
    shutil.copytree(IMAGES_DIR / kind, context)
    if kind == "kafka":
        _link_jars(resolve_classpath(s, "kafka", s.stack.kafka_version, say), context / "libs")
        shutil.copy(TEMPLATES / "kafka-log4j.properties", context)
    elif kind == "cassandra":
        jars = resolve_classpath(s, "cassandra", s.stack.cassandra_version, say)
        _link_jars(jars, context / "lib")
        jamm = next((f"/opt/cassandra/lib/{Path(j).name}" for j in jars if Path(j).name.startswith("jamm-")), None)
        options = commands.cassandra_jvm_options(jamm, data="/var/lib/cassandra", logs="/var/log/cassandra",
                                                 logback="/opt/cassandra/logback.xml", tmp="/tmp")
        (context / "jvm.options").write_text("\n".join(options) + "\n")
        shutil.copy(TEMPLATES / "cassandra.yaml", context / "cassandra.yaml.template")
        shutil.copy(TEMPLATES / "cassandra-logback.xml", context / "logback.xml")
        _copy_ca(context / "pip-ca.crt")
    say(f"building {image.local}")
    docker("build", "--build-arg", f"BASE={BASE_IMAGE}", "-t", image.local, str(context), quiet=True)


def _build_project(base: str, say: Say) -> None:
    """deploy/Dockerfile on `base`, from the repo root (.dockerignore keeps local state out); pip gets the
    host's CA bundle for this build only."""
    say(f"building {PROJECT_IMAGE} on {base}")
    ca = PROJECT_ROOT / ".pip-ca.crt"
    _copy_ca(ca)
    try:
        docker("build", "--build-arg", f"BASE={base}", "-f", str(DEPLOY_DIR / "Dockerfile"), "-t", PROJECT_IMAGE,
               str(PROJECT_ROOT), quiet=True)
    finally:
        ca.unlink(missing_ok=True)


def _copy_ca(dest: Path) -> None:
    if HOST_CA_BUNDLE.exists():
        shutil.copy(HOST_CA_BUNDLE, dest)
    else:  # pip's own bundle then; the file must exist for the Dockerfile's COPY
        dest.write_text("")


def _link_jars(jars: list[str], dest: Path) -> None:
    """The jars, hard-linked from the Maven cache where the file system allows (copied where not)."""
    dest.mkdir(parents=True, exist_ok=True)
    for jar in jars:
        target = dest / Path(jar).name
        try:
            os.link(jar, target)
        except OSError:
            shutil.copy(jar, target)
