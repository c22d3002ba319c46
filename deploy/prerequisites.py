"""What the project needs from the machine, checked before anything starts.

`make demo`, `make run`, `make test` and `fanout stack up` check every prerequisite of what they do first and,
when one is missing, list all that are missing at once with the one command that installs them, and start
nothing. The Makefile runs this file with the system's python3 before the venv exists, so it uses the
standard library only:

    python3 deploy/prerequisites.py stack "make demo"    # exit 1 and the list when something is missing
    python3 deploy/prerequisites.py test "make test"     # the same for the tests (Chromium too)

Each purpose needs its own list; when something is missing, what only the other purposes need is named too, so
that a new machine learns everything it lacks from the first try. `fanout stack check` shows them all.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

JAVA_MAJOR = 17  # Kafka 3.9 and Cassandra 5.0 run on it here; Cassandra 5.0 refuses newer ones


def _python() -> str | None:
    if sys.version_info < (3, 11):  # noqa: UP036 (the system python3 runs this, and may be older)
        return f"python3 is {sys.version.split()[0]}; 3.11 or newer is needed"
    if sys.prefix == sys.base_prefix:  # a system python makes the venv, with pip from ensurepip
        try:
            import ensurepip  # noqa: F401
            import venv  # noqa: F401
        except ImportError:
            return "python3 cannot make a venv (ensurepip is missing)"
    return None


def _binary(name: str) -> Callable[[], str | None]:
    def check() -> str | None:
        return None if _found(name) else f"{name} is not on PATH"
    return check


def _found(path: str) -> str | None:
    return shutil.which(path) or (path if os.path.isfile(path) and os.access(path, os.X_OK) else None)


def _java() -> str | None:
    java = _found("java")
    if java is None:
        return "java is not on PATH"
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`java -version` failed: {exc}"
    found = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    major = int(found.group(1)) if found else 0
    major = int(found.group(2) or 0) if major == 1 and found else major  # "1.8.0" is Java 8
    if major != JAVA_MAJOR:
        return f"java on PATH ({java}) is Java {major or 'of an unknown version'}; Kafka and Cassandra need " \
               f"Java {JAVA_MAJOR}"
    return None


GO_MINOR = 22  # vegeta v12.13's go.mod asks for Go 1.22; Debian 12's golang-go is 1.19
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _go() -> str | None:
    """vegeta on PATH or built before (into the launcher's cache, FANOUT_CACHE_DIR), or a Go that can build it."""
    cache = os.path.join(REPO, os.environ.get("FANOUT_CACHE_DIR", os.path.join(".fanout", "cache")))
    if _found("vegeta") or os.path.isfile(os.path.join(cache, "bin", "vegeta")):
        return None
    go = _found("go")
    if go is None:
        return "neither vegeta nor go is on PATH"
    try:
        out = subprocess.run([go, "version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`go version` failed: {exc}"
    found = re.search(r"go1\.(\d+)", out)
    if not found or int(found.group(1)) < GO_MINOR:
        return f"go on PATH ({go}) is {out.split()[2] if len(out.split()) > 2 else 'of an unknown version'}; " \
               f"building vegeta needs go1.{GO_MINOR} or newer"
    return None


@dataclass(frozen=True)
class Prerequisite:
    name: str
    package: str  # the Debian package that installs it; "" where Debian 12 has none that will do
    why: str
    missing: Callable[[], str | None]  # None when it is there, else what is wrong
    by_hand: str = ""  # how to install it where no package will do


def prerequisites(prometheus_bin: str | None = None) -> dict[str, Prerequisite]:
    prometheus = prometheus_bin or os.environ.get("FANOUT_PROMETHEUS_BIN", "/usr/bin/prometheus")
    every = [
        Prerequisite("python", "python3-venv", "makes the venv", _python),
        Prerequisite("java", f"openjdk-{JAVA_MAJOR}-jre-headless", "runs Kafka and Cassandra", _java),
        Prerequisite("maven", "maven", "resolves the Kafka and Cassandra jars", _binary("mvn")),
        Prerequisite("prometheus", "prometheus", "is the metrics server",
                     lambda: None if _found(prometheus) else f"{prometheus} is not installed"),
        Prerequisite("kcat", "kcat", "is the outside Kafka client of the tests and of `make demo`'s hints",
                     _binary("kcat")),
        Prerequisite("chromium", "chromium", "runs the page test headless", _binary("chromium")),
        Prerequisite("chromedriver", "chromium-driver", "drives Chromium in the page test", _binary("chromedriver")),
        Prerequisite("wrk", "wrk", "loads the read service in `fanout bench reads` (which `make test` runs too)",
                     _binary("wrk")),
        Prerequisite("go", "", "builds vegeta, the open-loop load generator of `fanout bench reads`, once; and the "
                     "compose CLI where docker has none", _go,
                     by_hand=f"Go 1.{GO_MINOR} or newer from https://go.dev/dl/ (or vegeta on PATH)"),
        Prerequisite("docker", "docker.io", "runs docker-compose.yml (make test-docker)", _binary("docker")),
        Prerequisite("mmdebstrap", "mmdebstrap", "makes the Debian base of the local images", _binary("mmdebstrap")),
    ]
    return {p.name: p for p in every}


STACK = ("python", "java", "maven", "prometheus", "kcat")
# What each purpose needs; `make demo`, `make run` and `fanout stack up` are "stack".
PURPOSES: dict[str, tuple[str, ...]] = {
    "stack": STACK,
    "test": (*STACK, "chromium", "chromedriver", "wrk", "go"),  # tests/e2e/test_bench_reads.py loads with both
    "bench": (*STACK, "wrk", "go"),
    "docker": (*STACK, "docker", "mmdebstrap", "go"),
    "all": (*STACK, "chromium", "chromedriver", "wrk", "go", "docker", "mmdebstrap"),
}


@dataclass(frozen=True)
class Report:
    missing: dict[str, str]  # name -> what is wrong, for what the purpose needs
    elsewhere: dict[str, str]  # the same for what only other purposes need

    def install_command(self) -> str:
        """The apt-get line for the missing ones Debian packages ("" if none is)."""
        table = prerequisites()
        packages = " ".join(dict.fromkeys(table[name].package for name in self.missing if table[name].package))
        sudo = "" if os.geteuid() == 0 else "sudo "
        if not packages:
            return ""
        return f"{sudo}apt-get update && {sudo}apt-get install -y --no-install-recommends {packages}"


def check(purpose: str, prometheus_bin: str | None = None) -> Report:
    table = prerequisites(prometheus_bin)
    found = {name: p.missing() for name, p in table.items()}
    needed = PURPOSES[purpose]
    return Report(missing={n: why for n in needed if (why := found[n])},
                  elsewhere={n: why for n, why in found.items() if why and n not in needed})


def explain(report: Report, command: str) -> str:
    """The message a command prints when something it needs is missing."""
    table = prerequisites()
    lines = [f"{command} needs what this machine lacks, so it started nothing:"]
    lines += [f"  - {name}: {why}; it {table[name].why}" for name, why in report.missing.items()]
    if install := report.install_command():
        lines += ["install them with (Debian):", f"  {install}"]
    lines += [f"and by hand: {table[name].by_hand}" for name in report.missing if not table[name].package]
    if report.elsewhere:
        lines.append("also missing, for other make targets (not needed here): "
                     + ", ".join(table[name].package or name for name in report.elsewhere))
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    purpose = argv[0] if argv else "all"
    if purpose not in PURPOSES:
        print(f"usage: prerequisites.py [{'|'.join(PURPOSES)}] [COMMAND]", file=sys.stderr)
        return 2
    command = argv[1] if len(argv) > 1 else f"python3 deploy/prerequisites.py {purpose}"
    report = check(purpose)
    if report.missing:
        print(explain(report, command), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
