"""docker-compose.yml as compose would resolve it, for the tests that check it without a Docker engine."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_ENV = ROOT / "deploy" / "cluster.env"


def compose_services() -> dict[str, dict[str, Any]]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return dict(data["services"])


def resolved_env(service: dict[str, Any], compose_env: dict[str, str] | None = None) -> dict[str, str]:
    """The service's environment as compose resolves it: ${VAR:-default} from `compose_env` (the shell or an
    --env-file), else the default."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)

    def resolve(match: re.Match[str]) -> str:
        return (compose_env or {}).get(match[1], match[2])

    return {str(k): re.sub(r"\$\{(\w+):-([^}]*)\}", resolve, str(v)) for k, v in raw.items()}


def cluster_env() -> dict[str, str]:
    """deploy/cluster.env, the --env-file of the cluster profile."""
    lines = [ln.strip() for ln in CLUSTER_ENV.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    return dict(ln.split("=", 1) for ln in lines)
