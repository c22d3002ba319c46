"""The README's commands work as pasted: its curl block after `make run`, run verbatim by bash in a clean
environment (no venv activated, only /usr/bin and /bin on PATH) in the repository, against a real deployment
on the default ports, ends with user 2's post in user 1's feed."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from live import Deployment, deploy

from fanout.settings import Settings

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def readme_block(heading: str, containing: str) -> str:
    """The first ```bash block under `heading` (up to the next heading of its level) that holds `containing`."""
    text = (REPO / "README.md").read_text()
    level = heading.split(" ")[0]
    start = text.index(f"\n{heading}\n")
    end = re.search(rf"\n{level} ", text[start + len(heading) + 2:])
    section = text[start:start + len(heading) + 2 + end.start()] if end else text[start:]
    blocks = [b for b in re.findall(r"```bash\n(.*?)```", section, flags=re.S) if containing in b]
    assert blocks, f"no bash block with {containing!r} under {heading!r} in README.md"
    return blocks[0]


def clean_shell(script: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["/usr/bin/env", "-i", f"HOME={home}", "PATH=/usr/bin:/bin", "bash", "-euo", "pipefail",
                           "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def live(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with deploy(stack, tmp_path_factory.mktemp("logs"), "quickstart") as d:
        assert d.processes.url("ingest-api").endswith(":8081"), "the README's commands use the default ports"
        yield d


def test_the_readme_commands_after_make_run_work_as_pasted(live: Deployment, tmp_path: Path) -> None:
    block = readme_block("## The pipeline, and its APIs with curl", "v1/feed?limit=20")
    run = clean_shell(block, tmp_path)
    assert run.returncode == 0, run.stderr
    assert "command not found" not in run.stderr
    # The follow and the post are accepted (202 bodies name their event); the feed may still be on its way.
    assert '"type":"Followed"' in run.stdout and '"post_id"' in run.stdout
    read_feed = [line for line in block.splitlines() if "v1/feed?limit=20" in line][0]
    deadline = time.monotonic() + 30
    while True:
        feed = clean_shell(read_feed, tmp_path)
        assert feed.returncode == 0, feed.stderr
        items = json.loads(feed.stdout)["items"]
        if any(i["author_id"] == 2 and i["body"] == "hello" for i in items):
            break
        assert time.monotonic() < deadline, f"user 2's post never reached user 1's feed: {feed.stdout}"
        time.sleep(0.5)
