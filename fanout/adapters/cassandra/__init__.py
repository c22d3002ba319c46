"""The Cassandra adapter: the session bridge, one module per group of tables, migrations apart."""

from __future__ import annotations

from fanout.adapters.cassandra.batching import Writes
from fanout.adapters.cassandra.graph import CassandraGraph
from fanout.adapters.cassandra.inbox import CassandraInboxes
from fanout.adapters.cassandra.migrations import migrate
from fanout.adapters.cassandra.notifications import CassandraNotifications
from fanout.adapters.cassandra.posts import CassandraPosts
from fanout.adapters.cassandra.readers import CassandraReaders
from fanout.adapters.cassandra.session import Cassandra, connect
from fanout.core.ports import Stores
from fanout.settings import Settings

__all__ = ["Cassandra", "cassandra_stores", "connect", "migrate"]


def cassandra_stores(db: Cassandra, settings: Settings) -> Stores:
    """Every port on one session; statements are prepared here, once. The ports share one `Writes`, so the
    rows of different tables written in the same moment (a post, its timeline entry, inbox rows of other
    posts) travel in the same batches."""
    writes = Writes(db, settings.inbox_batch_size, settings.write_window, settings.bulk_write_window,
                    settings.bulk_latency_tolerance)
    return Stores(
        posts=CassandraPosts(db, writes),
        graph=CassandraGraph(db, writes, settings.chunk_size),
        readers=CassandraReaders(db, writes, settings.inbox_ttl_seconds),
        inboxes=CassandraInboxes(db, writes, settings.inbox_ttl_seconds),
        notifications=CassandraNotifications(db, settings.notification_retention_days * 86_400),
    )
