"""Every command the README and the Makefile's hints give to paste works in a new terminal: the `fanout`
command is called as `.venv/bin/fanout` (nothing on PATH and no venv activated is assumed). The e2e test
tests/e2e/test_quickstart.py runs the README's block after `make run` verbatim in a clean shell."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# `fanout` where a shell would look it up: at the start of a command, or inside $( ).
BARE = re.compile(r"(^|[;&|]\s*|\$\()\s*fanout\s")


def test_the_readme_code_blocks_call_the_venv_command() -> None:
    blocks = re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    assert blocks
    bare = [line for block in blocks for line in block.splitlines() if BARE.search(line)]
    assert bare == []


def test_the_makefile_hints_call_the_venv_command() -> None:
    hints = [line for line in (REPO / "Makefile").read_text().splitlines() if line.strip().startswith("@echo")]
    assert any("fanout token" in line for line in hints)
    assert [line for line in hints if BARE.search(line.replace("\\$$(", "$("))] == []
