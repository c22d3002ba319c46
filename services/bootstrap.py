"""The composition root: every process builds its clients here, from one Settings object."""

from __future__ import annotations

from dataclasses import dataclass

from cassandra.cluster import Cluster

from fanout.cassandra import Cassandra, connect
from fanout.metrics import Metrics
from fanout.settings import Settings
from fanout.store import Store


@dataclass
class Storage:
    cluster: Cluster
    store: Store

    def close(self) -> None:
        self.cluster.shutdown()


def open_storage(settings: Settings, metrics: Metrics) -> Storage:
    cluster, session = connect(settings, settings.keyspace)
    return Storage(cluster, Store(Cassandra(session, settings, metrics), settings.inbox_batch_size))
