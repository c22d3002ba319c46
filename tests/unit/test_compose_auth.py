"""Static checks of docker-compose.yml's credentials (no Docker engine needed): the servers require them,
each project container carries only its own, and the brokers' users are the ones the containers log in as.
tests/e2e/test_compose_kafka.py runs the compose Kafka's start script against a real broker."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from compose_file import cluster_env as _cluster_env
from compose_file import compose_services
from compose_file import resolved_env as _env

from deploy import compose
from fanout.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
KAFKA_USER = {"ingest-api": ("sasl", "service"), "read-api": ("reader", "reader"), "worker": ("worker", "worker"),
              "migrate": ("admin", "admin")}  # container: (its FANOUT_KAFKA_<who>, its principal)


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    return compose_services()


def _settings(service: dict[str, Any], compose_env: dict[str, str] | None = None) -> Settings:
    return Settings.load(env=_env(service, compose_env))


def test_the_brokers_users_are_the_ones_each_container_logs_in_as(services: dict[str, dict[str, Any]]) -> None:
    for compose_env in ({}, {"FANOUT_KAFKA_SASL_PASSWORD": "from-dotenv", "FANOUT_KAFKA_WORKER_USERNAME": "w2"}):
        broker = _env(services["kafka"], compose_env)
        users = {who: (broker[f"FANOUT_KAFKA_{who.upper()}_USERNAME"], broker[f"FANOUT_KAFKA_{who.upper()}_PASSWORD"])
                 for who in ("admin", "sasl", "reader", "worker")}
        assert len({user for user, _ in users.values()}) == 4 and all(p for _, p in users.values())
        for name, (who, principal) in KAFKA_USER.items():
            assert _settings(services[name], compose_env).kafka_credentials(principal) == users[who], name
        # The admin is the only super user; the brokers log in to each other (and the controllers) as it.
        assert broker["KAFKA_SUPER_USERS"] == f"User:{users['admin'][0]}"
        inter_broker = broker["KAFKA_LISTENER_NAME_SASL__PLAINTEXT_SCRAM___SHA___512_SASL_JAAS_CONFIG"]
        assert f'username="{users["admin"][0]}" password="{users["admin"][1]}"' in inter_broker


def test_each_container_carries_only_its_own_secrets(services: dict[str, dict[str, Any]]) -> None:
    own = {name: f"FANOUT_KAFKA_{KAFKA_USER[name][0].upper()}_PASSWORD"
           for name in ("ingest-api", "read-api", "worker")}
    kafka_passwords = {f"FANOUT_KAFKA_{who}_PASSWORD" for who in ("SASL", "READER", "WORKER", "ADMIN")}
    roles = {"worker": "WORKER", "ingest-api": "INGEST", "read-api": "READER"}
    cassandra_passwords = {f"FANOUT_CASSANDRA{who}_PASSWORD" for who in ("", "_ADMIN", "_WORKER", "_INGEST", "_READER")}
    for name, mine in own.items():
        env = _env(services[name])
        assert {k for k in env if k in kafka_passwords} == {mine}, name
        # Its own Cassandra role, and no other: not the schema's owner, not the admin, not another process's.
        assert {k for k in env if k in cassandra_passwords} == {f"FANOUT_CASSANDRA_{roles[name]}_PASSWORD"}, name
        s = _settings(services[name]).as_process(roles[name].lower())  # type: ignore[arg-type]
        assert s.cassandra_username == env[f"FANOUT_CASSANDRA_{roles[name]}_USERNAME"], name
    migrate = _env(services["migrate"])
    assert {k for k in migrate if k in kafka_passwords} == {"FANOUT_KAFKA_ADMIN_PASSWORD"}
    assert {k for k in migrate if k in cassandra_passwords} == cassandra_passwords  # it creates every role
    users = {migrate[f"FANOUT_CASSANDRA{who}_USERNAME"] for who in ("", "_ADMIN", "_WORKER", "_INGEST", "_READER")}
    assert len(users) == 5 and "cassandra" not in users


def test_kafka_authenticates_and_authorizes_every_listener(services: dict[str, dict[str, Any]]) -> None:
    for name in ("kafka", "kafka-2", "kafka-3"):
        env = _env(services[name])
        protocols = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
        assert set(protocols.values()) == {"SASL_PLAINTEXT"}, name
        assert env["KAFKA_AUTHORIZER_CLASS_NAME"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
        assert env["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
        # kafka-storage.sh accepts only a Kafka uuid: 16 bytes, base64url without padding.
        assert len(base64.urlsafe_b64decode(env["CLUSTER_ID"] + "==")) == 16 and len(env["CLUSTER_ID"]) == 22
    assert services["kafka"]["command"] == ["bash", "/opt/fanout/kafka-compose-start.sh"]
    assert (ROOT / "deploy" / "kafka-compose-start.sh").is_file()


def test_cassandra_requires_logins_with_auth_replicated_like_the_data(services: dict[str, dict[str, Any]]) -> None:
    for compose_env, replicas in (({}, "1"), (_cluster_env(), "3")):
        for name in ("cassandra", "cassandra-2", "cassandra-3"):
            options = _env(services[name], compose_env)["JVM_EXTRA_OPTS"].split()
            assert "-Dcassandra.settings.authenticator=PasswordAuthenticator" in options, name
            assert "-Dcassandra.settings.authorizer=CassandraAuthorizer" in options, name
            assert f"-Dcassandra.system_auth.default_rf={replicas}" in options, name


def test_compose_init_writes_the_compose_files_default_users(services: dict[str, dict[str, Any]]) -> None:
    """.env names every user (the login sheet of kcat, cqlsh, the tests): the ones the compose file defaults to."""
    broker = _env(services["kafka"])
    migrate = _env(services["migrate"])
    defaults = {name: broker.get(name) or migrate.get(name) for name in compose.USERNAMES}
    assert defaults == compose.USERNAMES
    values = compose.env_values({}, {}, 1, {}, dashboard=False)
    assert {name: values[name] for name in compose.USERNAMES} == compose.USERNAMES
    assert all(len(values[name]) >= 32 for name in compose.PASSWORDS)
    # Kept: what .env or the environment already holds; the cluster profile's values for 3 nodes.
    again = compose.env_values(values, {"FANOUT_CASSANDRA_PASSWORD": "from-env"}, 3, {}, dashboard=True)
    assert {k: again[k] for k in compose.PASSWORDS} == {k: values[k] for k in compose.PASSWORDS}
    assert again["COMPOSE_PROFILES"] == "cluster,dashboard" and again["NODES"] == "3"
    fresh = compose.env_values({}, {"FANOUT_CASSANDRA_PASSWORD": "from-env"}, 1, {}, dashboard=False)
    assert fresh["FANOUT_CASSANDRA_PASSWORD"] == "from-env" and fresh["COMPOSE_PROFILES"] == ""


def test_the_env_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    target = tmp_path / ".env"
    target.write_text("OLD=1\n")
    target.chmod(0o644)
    compose.write_env(target, {"FANOUT_CASSANDRA_PASSWORD": "p"})
    assert target.stat().st_mode & 0o777 == 0o600
    assert compose.read_env(target) == {"FANOUT_CASSANDRA_PASSWORD": "p"}
