"""Every prerequisite is checked before anything starts, and all that are missing are named at once with the
one command that installs them: deploy/prerequisites.py, as `make demo` and `fanout stack up` run it, on a
PATH that holds only what each test puts there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# The interpreter the venv was made from: a system python3, as the Makefile runs the check before any venv.
SYSTEM_PYTHON = getattr(sys, "_base_executable", sys.executable)


def _stub(bin_dir: Path, name: str, stderr: str = "") -> None:
    path = bin_dir / name
    path.write_text(f"#!/bin/sh\necho '{stderr}' >&2\n")
    path.chmod(0o755)


def _run(bin_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {"PATH": str(bin_dir), "HOME": str(bin_dir.parent), **env}
    return subprocess.run([SYSTEM_PYTHON, str(REPO / "deploy" / "prerequisites.py"), *args], capture_output=True,
                          text=True, env=environment, timeout=60)


def test_everything_missing_is_named_at_once_with_one_install_command(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _stub(bin_dir, "java", 'openjdk version "21.0.2" 2024-01-16')  # there, but not the version the servers run on
    run = _run(bin_dir, "stack", "make demo", FANOUT_PROMETHEUS_BIN=str(tmp_path / "no-prometheus"))
    assert run.returncode == 1
    message = run.stderr
    assert message.startswith("make demo needs what this machine lacks, so it started nothing:")
    for name in ("java", "maven", "prometheus", "kcat"):
        assert f"  - {name}: " in message
    assert "Java 21" in message
    install = [line.strip() for line in message.splitlines() if "apt-get install" in line]
    assert len(install) == 1
    assert install[0].endswith("apt-get install -y --no-install-recommends openjdk-17-jre-headless maven prometheus "
                               "kcat")
    # What only the tests, benchmarks and images need is named too, without failing this command for it.
    assert "chromium-driver" in message.splitlines()[-1] and "wrk" in message.splitlines()[-1]


def test_nothing_is_said_when_everything_is_there(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _stub(bin_dir, "java", 'openjdk version "17.0.13" 2024-10-15')
    for name in ("mvn", "prometheus", "kcat"):
        _stub(bin_dir, name)
    run = _run(bin_dir, "stack", "make demo", FANOUT_PROMETHEUS_BIN="prometheus")
    assert (run.returncode, run.stdout, run.stderr) == (0, "", "")
    tests = _run(bin_dir, "test", "make test", FANOUT_PROMETHEUS_BIN="prometheus",
                 FANOUT_CACHE_DIR=str(tmp_path / "cache"))
    assert tests.returncode == 1
    for name in ("chromium", "chromedriver", "wrk", "go"):
        assert f"  - {name}: " in tests.stderr
    assert "apt-get install -y --no-install-recommends chromium chromium-driver wrk\n" in tests.stderr
    assert "and by hand: Go 1.22 or newer" in tests.stderr  # no Debian 12 package builds vegeta


def test_a_go_too_old_for_vegeta_is_named_and_vegeta_itself_will_do(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "go").write_text("#!/bin/sh\necho 'go version go1.19.8 linux/amd64'\n")
    (bin_dir / "go").chmod(0o755)
    old = _run(bin_dir, "bench", FANOUT_CACHE_DIR=str(tmp_path / "cache"))
    assert "  - go: go on PATH" in old.stderr and "is go1.19.8; building vegeta needs go1.22" in old.stderr
    _stub(bin_dir, "vegeta")
    assert "  - go: " not in _run(bin_dir, "bench", FANOUT_CACHE_DIR=str(tmp_path / "cache")).stderr


def test_make_demo_checks_before_it_makes_the_venv(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("make", "bash"):
        found = shutil.which(tool)
        assert found, f"{tool} is needed to run the Makefile"
        (bin_dir / tool).symlink_to(found)
    (bin_dir / "python3").symlink_to(SYSTEM_PYTHON)
    venv = tmp_path / "venv"
    run = subprocess.run(["make", "-C", str(REPO), "demo", f"VENV={venv}"], capture_output=True, text=True,
                         env={"PATH": str(bin_dir), "HOME": str(tmp_path)}, timeout=120)
    assert run.returncode != 0
    assert "make demo needs what this machine lacks, so it started nothing:" in run.stderr
    assert "  - java: " in run.stderr and "  - kcat: " in run.stderr
    assert not venv.exists()


def test_stack_up_starts_nothing_when_something_is_missing(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    state = tmp_path / "state"
    env = {**os.environ, "PATH": str(bin_dir), "FANOUT_STATE_DIR": str(state),
           "FANOUT_PROMETHEUS_BIN": str(tmp_path / "no-prometheus")}
    run = subprocess.run([sys.executable, "-m", "services.cli", "stack", "up"], capture_output=True, text=True,
                         env=env, cwd=REPO, timeout=120)
    assert run.returncode == 1
    output = " ".join(run.stderr.split())  # rich wraps long lines
    assert "fanout stack up needs what this machine lacks, so it started nothing:" in output
    for name in ("java", "maven", "prometheus", "kcat"):
        assert f"- {name}: " in output
    assert not state.exists() or not any(state.rglob("*")), "nothing may be written before the check passes"
