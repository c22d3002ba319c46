"""Least privilege in Cassandra: each process connects with its own role (Settings.as_process), which the
schema's owner grants only what that process needs (migrations.grants)."""

from __future__ import annotations

from fanout.adapters.cassandra.migrations import grants
from fanout.settings import Settings

ROLES = {"cassandra_username": "owner", "cassandra_password": "o", "cassandra_admin_username": "admin",
         "cassandra_admin_password": "a", "cassandra_worker_username": "w", "cassandra_worker_password": "wp",
         "cassandra_ingest_username": "i", "cassandra_ingest_password": "ip", "cassandra_reader_username": "r",
         "cassandra_reader_password": "rp"}


KAFKA = {"kafka_admin_username": "ka", "kafka_admin_password": "kap", "kafka_sasl_username": "ks",
         "kafka_sasl_password": "ksp", "kafka_reader_username": "kr", "kafka_reader_password": "krp",
         "kafka_worker_username": "kw", "kafka_worker_password": "kwp"}
# Each process's Kafka user: the settings' prefix, and the principal it connects as.
KAFKA_USER = {"worker": ("worker", "worker"), "ingest": ("sasl", "service"), "reader": ("reader", "reader")}


def test_a_process_holds_its_own_role_and_no_other_login() -> None:
    s = Settings(**ROLES, **KAFKA)  # type: ignore[arg-type]
    for process, (user, password) in {"worker": ("w", "wp"), "ingest": ("i", "ip"), "reader": ("r", "rp")}.items():
        mine = s.as_process(process)  # type: ignore[arg-type]
        assert (mine.cassandra_username, mine.cassandra_password) == (user, password)
        others = [getattr(mine, f) for f in ROLES if f not in ("cassandra_username", "cassandra_password")]
        assert others == [""] * len(others), process
        prefix, principal = KAFKA_USER[process]
        assert {k: v for k, v in vars(mine).items() if k in KAFKA and v} == {
            k: v for k, v in KAFKA.items() if k.startswith(f"kafka_{prefix}_")}
        assert mine.kafka_credentials(principal) == s.kafka_credentials(principal)  # type: ignore[arg-type]
    # Without a Kafka user of its own, the worker or the read service keeps the services' (the fallback).
    for process in ("worker", "reader"):
        shared = Settings(kafka_sasl_username="ks", kafka_sasl_password="ksp").as_process(process)  # type: ignore[arg-type]
        assert shared.kafka_credentials(KAFKA_USER[process][1]) == ("ks", "ksp")  # type: ignore[arg-type]


def test_a_process_without_a_role_of_its_own_uses_the_owners() -> None:
    s = Settings(cassandra_username="owner", cassandra_password="o", cassandra_reader_username="r",
                 cassandra_reader_password="rp")
    assert (s.as_process("worker").cassandra_username, s.as_process("worker").cassandra_password) == ("owner", "o")
    assert Settings().as_process("reader").cassandra_username == ""  # a stack without logins


def test_the_owner_grants_each_role_only_what_its_process_needs() -> None:
    s = Settings(keyspace="ks", **ROLES)  # type: ignore[arg-type]
    assert grants(s) == [
        "GRANT SELECT ON KEYSPACE ks TO w", "GRANT MODIFY ON KEYSPACE ks TO w",
        "GRANT SELECT ON KEYSPACE ks TO i", "GRANT MODIFY ON TABLE ks.node_leases TO i",
        "GRANT MODIFY ON TABLE ks.idempotency_keys TO i", "GRANT MODIFY ON TABLE ks.notification_groups TO i",
        "GRANT SELECT ON KEYSPACE ks TO r",
    ]
    assert not any(word in g for g in grants(s) for word in ("ALTER", "DROP", "CREATE", "AUTHORIZE", "ALL"))
    assert grants(Settings(keyspace="ks", cassandra_username="owner")) == []  # no process roles: nothing to grant
