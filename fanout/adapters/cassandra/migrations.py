"""`fanout migrate`: the keyspace and every table of schemas/cql, applied in file order (idempotent)."""

from __future__ import annotations

from pathlib import Path

from fanout.adapters.cassandra.session import connect
from fanout.settings import Settings

CQL_DIR = Path(__file__).resolve().parents[3] / "schemas" / "cql"


def migrate(settings: Settings) -> list[str]:
    """Create the keyspace and every table (idempotent). Returns the statements applied."""
    cluster, session = connect(settings)
    try:
        applied = [
            f"CREATE KEYSPACE IF NOT EXISTS {settings.keyspace} WITH replication = {settings.keyspace_replication}"
        ]
        session.execute(applied[0])
        for path in sorted(CQL_DIR.glob("*.cql")):
            for stmt in _statements(path.read_text()):
                cql = stmt.format(keyspace=settings.keyspace)
                session.execute(cql, timeout=60)
                applied.append(cql)
        return applied
    finally:
        cluster.shutdown()


def _statements(text: str) -> list[str]:
    lines = [line for line in text.splitlines() if not line.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
