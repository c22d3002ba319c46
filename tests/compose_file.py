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


def interpolate(value: object, compose_env: dict[str, str] | None = None) -> str:
    """A value as compose interpolates it: ${VAR:-default} from `compose_env` (the shell or an --env-file),
    else the default; ${VAR:?message} (a value compose refuses to run without) from `compose_env`, else as
    `fanout compose init` would have set it: "generated-VAR"."""

    def resolve(match: re.Match[str]) -> str:
        given = (compose_env or {}).get(match[1])
        if given is not None:
            return given
        return match[3] if match[2] == "-" else f"generated-{match[1]}"

    return re.sub(r"\$\{(\w+):([-?])([^}]*)\}", resolve, str(value))


def resolved_env(service: dict[str, Any], compose_env: dict[str, str] | None = None) -> dict[str, str]:
    """The service's environment as compose resolves it (`interpolate`)."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {str(k): interpolate(v, compose_env) for k, v in raw.items()}


def cluster_env() -> dict[str, str]:
    """deploy/cluster.env, the --env-file of the cluster profile."""
    lines = [ln.strip() for ln in CLUSTER_ENV.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    return dict(ln.split("=", 1) for ln in lines)
