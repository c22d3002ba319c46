"""The servers require credentials, and each user may do only its part (issue 12, item 7).

On the repo's stack when it requires credentials (the default for a new one); a stack created before
without them stays so (deploy/credentials.py), and then these tests start one of their own that does,
with its own state dir and ports. Either way they run: nothing here skips.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from cassandra import AuthenticationFailed, Unauthorized
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import Cluster, NoHostAvailable
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from ports import free_ports

from deploy import credentials
from deploy import stack as launcher
from fanout.adapters.cassandra import migrate
from fanout.settings import CassandraProcess, KafkaPrincipal, Settings
from fanout.write.producer import delete_topics, ensure_topics

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def secured(settings: Settings, request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A running stack that requires credentials, with a deployment (topics, ACLs) of this module's own."""
    if launcher.requires_credentials(settings):
        s: Settings = request.getfixturevalue("stack")
        yield _deployed(s)
        return
    names = ["kafka_port", "kafka_controller_port", "cassandra_port", "cassandra_storage_port", "prometheus_port"]
    values: dict[str, Any] = dict(zip(names, free_ports(len(names)), strict=True))
    own = Settings.load(state_dir=tmp_path_factory.mktemp("auth") / "state", cache_dir=settings.stack.cache_dir,
                        kafka_heap="256m", cassandra_heap="512M", stack_auth=True, **values)
    try:
        launcher.up(own, say=lambda msg: print(f"[auth stack] {msg}"))
        yield _deployed(credentials.fill(own))
    finally:
        launcher.down(own, say=print)


def _deployed(s: Settings) -> Settings:
    assert s.kafka_admin_username and s.kafka_sasl_username and s.kafka_reader_username and s.kafka_worker_username
    assert s.cassandra_username
    assert s.cassandra_worker_username and s.cassandra_ingest_username and s.cassandra_reader_username
    deployment = s.isolated(f"e2e-auth-{uuid.uuid4().hex[:8]}")
    ensure_topics(deployment)  # as the admin: topics, then the ACLs of every process's user
    return deployment


def _produce(config: dict[str, Any], topic: str) -> KafkaError | None:
    """Produce one message and wait for the answer: None if Kafka took it, else why not."""
    outcome: list[KafkaError | None] = []

    def delivered(err: KafkaError | None, _msg: Message) -> None:
        outcome.append(err)

    producer = Producer({"message.timeout.ms": 8000, "acks": "all", **config})
    producer.produce(topic, key=b"k", value=b"v", on_delivery=delivered)
    producer.flush(15)
    assert len(outcome) == 1, "no delivery report within 15 s"
    return outcome[0]


def _as(s: Settings, principal: KafkaPrincipal, password: str | None = None) -> dict[str, Any]:
    config = s.kafka_config(principal)
    return {**config, "sasl.password": password} if password is not None else config


# ---------------------------------------------------------------------------------------------------
# Kafka


def test_kafka_refuses_a_client_without_credentials(secured: Settings) -> None:
    err = _produce({"bootstrap.servers": secured.kafka_bootstrap, "message.timeout.ms": 3000}, secured.events_topic)
    assert err is not None and err.code() == KafkaError._MSG_TIMED_OUT, err  # never even reaches a topic
    with pytest.raises(KafkaException):
        AdminClient({"bootstrap.servers": secured.kafka_bootstrap}).list_topics(timeout=2)


@pytest.mark.parametrize("principal", ["service", "reader", "worker", "admin"])
def test_kafka_refuses_a_wrong_password(secured: Settings, principal: KafkaPrincipal) -> None:
    errors: list[KafkaError] = []
    producer = Producer({**_as(secured, principal, password="not-the-password"), "error_cb": errors.append})
    deadline = time.monotonic() + 15
    while not errors and time.monotonic() < deadline:
        producer.poll(0.2)  # connects, and serves error_cb
    assert [e.code() for e in errors[:1]] == [KafkaError._AUTHENTICATION], errors
    with pytest.raises(KafkaException):
        producer.list_topics(timeout=1)


# Which user may write which topic: only the ingest API's writes author events, only the read service's
# feed reads, only the worker's chunk tasks, dead letters and feed updates.
WRITES = [
    ("service", "events_topic", True),
    ("service", "reads_topic", False),
    ("service", "chunks_topic", False),
    ("service", "dead_letter_topic", False),
    ("service", "updates_topic", False),
    ("reader", "reads_topic", True),
    ("reader", "events_topic", False),
    ("reader", "chunks_topic", False),
    ("reader", "dead_letter_topic", False),
    ("reader", "updates_topic", False),
    ("worker", "chunks_topic", True),
    ("worker", "dead_letter_topic", True),
    ("worker", "updates_topic", True),
    ("worker", "events_topic", False),
    ("worker", "reads_topic", False),
]


@pytest.mark.parametrize(("principal", "topic", "allowed"), WRITES)
def test_each_kafka_user_writes_only_its_topics(secured: Settings, principal: KafkaPrincipal, topic: str,
                                                allowed: bool) -> None:
    err = _produce(_as(secured, principal), getattr(secured, topic))
    if allowed:
        assert err is None, err
    else:
        assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err


def test_only_the_kafka_admin_creates_topics(secured: Settings) -> None:
    topic = f"{secured.app_id}.not-allowed"
    for principal in ("service", "reader", "worker"):
        admin = AdminClient(_as(secured, principal))
        with pytest.raises(KafkaException) as info:
            admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
        assert info.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, principal


def test_a_deployment_is_writable_the_moment_its_grant_returns(secured: Settings) -> None:
    """The broker applies new ACLs a moment after the controller accepts them; `grant` waits for that, so
    services started right after `fanout migrate` are not refused (CI once was, in this very order)."""
    for _ in range(5):
        fresh = secured.isolated(f"e2e-grant-{uuid.uuid4().hex[:8]}")
        ensure_topics(fresh)
        err = _produce(_as(fresh, "service"), fresh.events_topic)
        delete_topics(fresh)
        assert err is None, err


# ---------------------------------------------------------------------------------------------------
# Cassandra


def _cql(s: Settings, login: tuple[str, str] | None) -> Cluster:
    return Cluster(s.cassandra_contact_points, port=s.cassandra_port, protocol_version=4, connect_timeout=10,
                   auth_provider=PlainTextAuthProvider(*login) if login else None)


@pytest.mark.parametrize("who", ["nobody", "wrong password", "default superuser"])
def test_cassandra_refuses_unknown_logins(secured: Settings, who: str) -> None:
    login = {"nobody": None, "wrong password": (secured.cassandra_username, "not-the-password"),
             "default superuser": ("cassandra", "cassandra")}[who]  # dropped once the admin exists
    cluster = _cql(secured, login)
    try:
        with pytest.raises(NoHostAvailable) as info:
            cluster.connect()
        assert all(isinstance(e, AuthenticationFailed) for e in info.value.errors.values()), info.value.errors
    finally:
        cluster.shutdown()


def test_the_project_role_owns_its_keyspaces_and_nothing_else(secured: Settings) -> None:
    cluster = _cql(secured, (secured.cassandra_username, secured.cassandra_password))
    try:
        session = cluster.connect()
        session.default_timeout = 30
        keyspace = f"{secured.keyspace}_own"
        session.execute(f"CREATE KEYSPACE {keyspace} WITH replication = {secured.keyspace_replication}")
        try:  # its creator may use it without any grant
            session.execute(f"CREATE TABLE {keyspace}.t (k int PRIMARY KEY, v int)")
            session.execute(f"INSERT INTO {keyspace}.t (k, v) VALUES (1, 2)")
            assert session.execute(f"SELECT v FROM {keyspace}.t WHERE k = 1").one().v == 2
        finally:
            session.execute(f"DROP KEYSPACE {keyspace}")
        with pytest.raises(Unauthorized):
            session.execute("SELECT role FROM system_auth.roles")
        with pytest.raises(Unauthorized):
            session.execute("CREATE ROLE intruder WITH LOGIN = true AND PASSWORD = 'x'")
    finally:
        cluster.shutdown()


def test_the_credentials_file_is_private(secured: Settings) -> None:
    path = credentials.path(secured)
    assert path.stat().st_mode & 0o777 == 0o600
    assert credentials.read(secured)["kafka_admin_username"] == secured.kafka_admin_username
    kafka_props = launcher.servers(secured)[0].run_dir / "server.properties"
    assert kafka_props.stat().st_mode & 0o777 == 0o600  # it holds the admin's password


@pytest.mark.parametrize("process", ["worker", "ingest", "reader"])
def test_each_process_role_may_do_only_its_part(secured: Settings, process: CassandraProcess) -> None:
    """Least privilege: the schema's owner grants each process's role what that process needs on the
    deployment's keyspace (`fanout migrate`), and nothing else: no process may alter or drop the schema."""
    migrate(secured)
    s = secured.as_process(process)
    assert s.cassandra_username == f"fanout_{process}" and not s.cassandra_admin_password
    ks = secured.keyspace
    cluster = _cql(secured, (s.cassandra_username, s.cassandra_password))
    try:
        session = cluster.connect()
        session.default_timeout = 30
        session.execute(f"SELECT post_id FROM {ks}.posts LIMIT 1")  # every process reads
        lease = f"INSERT INTO {ks}.node_leases (node_id, owner) VALUES (1023, 'e2e') USING TTL 5"
        writes = {f"INSERT INTO {ks}.author_timeline (author_id, post_id) VALUES (1, 1)": {"worker"},
                  lease: {"worker", "ingest"}}
        for cql, writers in writes.items():
            if process in writers:
                session.execute(cql)
            else:
                with pytest.raises(Unauthorized):
                    session.execute(cql)
        for cql in (f"DROP TABLE {ks}.inbox", f"ALTER TABLE {ks}.posts ADD extra text",
                    f"CREATE TABLE {ks}.intruder (k int PRIMARY KEY)", f"DROP KEYSPACE {ks}",
                    f"GRANT MODIFY ON KEYSPACE {ks} TO {s.cassandra_username}"):
            with pytest.raises(Unauthorized):
                session.execute(cql)
    finally:
        cluster.shutdown()
