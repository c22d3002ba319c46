"""`fanout migrate`: the keyspace and every table of schemas/cql, applied in file order, then each process
role's permissions on them (idempotent)."""

from __future__ import annotations

from pathlib import Path

from fanout.adapters.cassandra.session import connect
from fanout.settings import CASSANDRA_PROCESSES, Settings

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
        for cql in grants(settings):
            session.execute(cql, timeout=60)
            applied.append(cql)
        return applied
    finally:
        cluster.shutdown()


# What each process's role may do on the keyspace (a process without a role of its own uses the owner's):
# the worker reads and writes the feed tables; the ingest API reads (who wrote a post, leases) and writes
# only its node leases, idempotency keys and read marks of notifications; the read service reads. None may
# alter or drop anything.
PERMISSIONS = {
    "worker": ["SELECT ON KEYSPACE {ks}", "MODIFY ON KEYSPACE {ks}"],
    "ingest": ["SELECT ON KEYSPACE {ks}", "MODIFY ON TABLE {ks}.node_leases", "MODIFY ON TABLE {ks}.idempotency_keys",
               "MODIFY ON TABLE {ks}.notification_groups"],
    "reader": ["SELECT ON KEYSPACE {ks}"],
}


def grants(settings: Settings) -> list[str]:
    """GRANT statements giving each configured process role its PERMISSIONS on this keyspace (issued by the
    owner, who holds every permission on the keyspace it created)."""
    return [f"GRANT {permission.format(ks=settings.keyspace)} TO {role}"
            for process in CASSANDRA_PROCESSES
            if (role := getattr(settings, f"cassandra_{process}_username"))
            and role != settings.cassandra_username
            for permission in PERMISSIONS[process]]


def _statements(text: str) -> list[str]:
    lines = [line for line in text.splitlines() if not line.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
