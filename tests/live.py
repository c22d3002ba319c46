"""A running deployment for end-to-end tests: its own keyspace and topics on the real stack, the real
`fanout` worker / notifier / read / ingest processes, and helpers to publish, wait and read feeds."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cassandra.cluster import Cluster

from deploy.processes import ProcessGroup
from fanout.adapters.cassandra import connect, migrate
from fanout.api.auth import Tokens
from fanout.core.events import Event, UserSeen
from fanout.lag import wait_until_drained
from fanout.settings import Settings
from fanout.write.producer import EventProducer, delete_topics, ensure_topics

PAGE = 7


@dataclass
class Deployment:
    settings: Settings
    processes: ProcessGroup
    producer: EventProducer
    reads_producer: EventProducer
    cluster: Cluster
    tokens: Tokens

    def publish(self, events: Sequence[Event]) -> None:
        """Publish and wait for Kafka's acknowledgements; a UserSeen as the read service sends it (its own
        Kafka user and topic), every other event as the ingest API does."""
        futures = [(self.reads_producer if isinstance(e, UserSeen) else self.producer).send(e) for e in events]
        for f in futures:
            f.result(60)

    def drain(self) -> None:
        wait_until_drained(self.settings, timeout=240, on_lag=lambda _: self.processes.check_alive())

    def http(self, service: str, user: int | None = None) -> httpx.Client:
        """A client of 'read-api' or 'ingest-api', acting as `user` (a bearer token of theirs) if given."""
        return httpx.Client(base_url=self.processes.url(service), timeout=30,
                            headers=self.tokens.headers(user) if user is not None else None)

    def read(self, user: int, **params: Any) -> dict[str, Any]:
        """One page of the user's own feed over HTTP, as JSON."""
        response = httpx.get(f"{self.processes.url('read-api')}/v1/feed", params=params,
                             headers=self.tokens.headers(user), timeout=30)
        result: dict[str, Any] = response.raise_for_status().json()
        return result

    def feed(self, user: int, page: int = PAGE) -> list[int]:
        """The user's whole feed, read page by page over HTTP."""
        ids: list[int] = []
        cursor = None
        while True:
            body = self.read(user, limit=page, **({"cursor": cursor} if cursor else {}))
            ids.extend(item["post_id"] for item in body["items"])
            cursor = body["next_cursor"]
            if cursor is None:
                return ids
            assert len(body["items"]) == page

    def worker_metric(self, name: str) -> float:
        return self.processes.metric(name)

    def wait_metric(self, name: str, at_least: float, timeout: float = 30.0) -> None:
        """Wait until a worker counter reaches `at_least` (e.g. a UserSeen sent by the read service in the
        background has been processed), then until the group has drained."""
        deadline = time.monotonic() + timeout
        while self.worker_metric(name) < at_least:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} stayed below {at_least}")
            time.sleep(0.1)
        self.drain()

    def cql(self, query: str, *params: object) -> list[Any]:
        return list(self.cluster.connect(self.settings.keyspace).execute(query, params))

    def inbox_rows(self) -> list[tuple[int, int, int]]:
        """Every inbox row (a partition holding only its reader's static state reads as post_id null)."""
        rows = self.cql("SELECT user_id, post_id, author_id FROM inbox")
        return [(r.user_id, r.post_id, r.author_id) for r in rows if r.post_id is not None]

    def celebrities(self, user: int) -> list[int]:
        """The celebrities in a reader's set (static columns of their inbox partition)."""
        rows = self.cql("SELECT celebrities FROM inbox WHERE user_id = %s LIMIT 1", user)
        return sorted(rows[0].celebrities or ()) if rows else []

    def inbox(self, user: int, *columns: str) -> list[Any]:
        """One user's inbox rows (post_id and `columns`), newest first."""
        selected = ", ".join(["post_id", *columns])
        return [r for r in self.cql(f"SELECT {selected} FROM inbox WHERE user_id = %s", user) if r.post_id is not None]



@contextmanager
def own_deployment(stack: Settings, name: str, **overrides: Any) -> Iterator[Settings]:
    """Topics and a migrated keyspace of the test's own (no processes); both are dropped after."""
    s = stack.isolated(name, **overrides)
    ensure_topics(s)
    migrate(s)
    try:
        yield s
    finally:
        cluster, session = connect(s)
        try:
            session.execute(f"DROP KEYSPACE IF EXISTS {s.keyspace}", timeout=60)
        finally:
            cluster.shutdown()
            delete_topics(s)


@contextmanager
def deploy(stack: Settings, log_dir: Path, name: str, **overrides: Any) -> Iterator[Deployment]:
    """An own deployment (topics, keyspace) with worker, notifier, read and ingest processes running on it. Without
    the per-user read and pull limits unless `overrides` set them: the oracle reads whole feeds page by page as
    fast as the API answers, below an inbox's cap too (tests/e2e/test_security.py runs with every default
    limit)."""
    overrides.setdefault("rate_limit_reads", "")
    overrides.setdefault("rate_limit_pulls", "")
    with own_deployment(stack, f"e2e-{name}{str(int(time.time() * 1000))[-8:]}", **overrides) as s:
        processes = ProcessGroup(s, log_dir).start("worker", "notifier", "read-api", "ingest-api")
        producer, reads_producer = EventProducer(s), EventProducer(s, principal="reader")
        cluster, _ = connect(s)
        try:
            yield Deployment(s, processes, producer, reads_producer, cluster, Tokens(s))
        finally:
            processes.stop()
            producer.close()
            reads_producer.close()
            cluster.shutdown()
