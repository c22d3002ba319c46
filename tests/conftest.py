"""Fixtures shared by every test layer.

Unit tests use none of the server fixtures. E2e tests ask for `stack`, which starts whatever part of the
real local stack is not running (never skips) and leaves it running: `make test` decides whether to
stop it afterwards, since it knows whether the stack was up before.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from deploy import credentials
from deploy import stack as launcher
from fanout.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[1]


def repo_settings(**overrides: Any) -> Settings:
    """Settings.load() with a relative state/cache dir anchored at the repo root, as `make` runs it.

    The launcher resolves those paths against the working directory; anchoring them here means pytest
    started from a subdirectory still finds the stack that `fanout stack up` started at the root.
    """
    s = Settings.load(**overrides)
    anchored: dict[str, Any] = {
        name: REPO_ROOT / path
        for name, path in (("state_dir", s.stack.state_dir), ("cache_dir", s.stack.cache_dir))
        if name not in overrides and not path.is_absolute()
    }
    return Settings.load(**anchored, **overrides) if anchored else s


@pytest.fixture(scope="session")
def settings() -> Settings:
    """The repo stack's Settings, without starting anything (for tests that build their own from it)."""
    return repo_settings()


@pytest.fixture(scope="session")
def stack(settings: Settings) -> Settings:
    """The real local stack, up and ready; returns its Settings (with the stack's credentials, if it has
    them: deploy/credentials.py). Starts what is missing, stops nothing."""
    launcher.up(settings, say=lambda msg: print(f"[stack] {msg}"))
    return credentials.fill(settings)


@pytest.fixture
def unique() -> str:
    """A short suffix of the test's own, for topic names, keyspaces and ids: no test wipes shared state."""
    return uuid.uuid4().hex[:8]
