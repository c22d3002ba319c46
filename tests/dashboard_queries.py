"""The PromQL of the Grafana dashboard, shared by the static check and the end-to-end check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DASHBOARD = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "dashboards" / "fanout.json"


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def dashboard_queries() -> list[str]:
    """Every target expr of every panel, in dashboard order."""
    return [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", []) if t.get("expr")]
