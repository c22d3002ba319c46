"""The servers' credentials without servers: the stack's file, who is granted what on Kafka, and the
servers' config lines (deploy/credentials.py, fanout/adapters/kafka_access.py, deploy/server_auth.py)."""

from __future__ import annotations

import concurrent.futures
import dataclasses
from pathlib import Path

import pytest

from deploy import credentials, server_auth, stack
from fanout.adapters.kafka_access import Rule, access_rules, grant
from fanout.settings import Settings


def _stack(tmp_path: Path, **overrides: object) -> Settings:
    return Settings.load(env={}, state_dir=tmp_path / "state", **overrides)


# --- the credentials file ----------------------------------------------------------------------------


def test_a_new_stack_gets_private_generated_credentials_that_every_command_finds(tmp_path: Path) -> None:
    s = _stack(tmp_path)
    assert stack.requires_credentials(s) and credentials.fill(s) == s  # nothing written yet
    made = credentials.create(s)
    assert credentials.path(s).stat().st_mode & 0o777 == 0o600
    assert (made.kafka_admin_username, made.kafka_sasl_username, made.kafka_reader_username,
            made.kafka_worker_username) == ("admin", "fanout", "fanout-reader", "fanout-worker")
    assert (made.cassandra_admin_username, made.cassandra_username) == ("admin", "fanout")
    # A role per process beside the schema's owner (fanout/adapters/cassandra/migrations.py grants them).
    assert (made.cassandra_worker_username, made.cassandra_ingest_username, made.cassandra_reader_username) == (
        "fanout_worker", "fanout_ingest", "fanout_reader")
    passwords = {getattr(made, f) for f in credentials.FIELDS if f.endswith("password")}
    assert len(passwords) == 9 and all(len(p) >= 24 for p in passwords)
    assert credentials.fill(_stack(tmp_path)) == made  # any later command, from the file alone
    assert credentials.create(_stack(tmp_path)) == made  # written once: a second `up` keeps them


def test_given_credentials_are_taken_and_win_over_the_file_for_clients_not_servers(tmp_path: Path) -> None:
    made = credentials.create(_stack(tmp_path, kafka_sasl_username="ingest", kafka_sasl_password="chosen"))
    assert (made.kafka_sasl_username, made.kafka_sasl_password) == ("ingest", "chosen")
    client = credentials.fill(_stack(tmp_path, cassandra_username="other", cassandra_password="pw"))
    assert (client.cassandra_username, client.cassandra_password) == ("other", "pw")
    assert client.kafka_sasl_username == "ingest"
    # A user without its password is not completed with the file's password of another user.
    half = credentials.fill(_stack(tmp_path, kafka_worker_username="someone"))
    assert (half.kafka_worker_username, half.kafka_worker_password) == ("someone", "")
    # The servers were made with the file's values, whatever a client's env says now.
    servers_side = credentials.of_stack(_stack(tmp_path, cassandra_username="other", cassandra_password="pw"))
    assert servers_side is not None and servers_side.cassandra_username == "fanout"


def test_unsafe_characters_in_a_given_password_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="FANOUT_KAFKA_ADMIN_PASSWORD"):
        credentials.create(_stack(tmp_path, kafka_admin_password='say "hi"'))
    assert not credentials.path(_stack(tmp_path)).exists()


def test_the_state_dir_decides_whether_a_stack_has_credentials(tmp_path: Path) -> None:
    s = _stack(tmp_path)
    assert stack.requires_credentials(s)
    assert not stack.requires_credentials(dataclasses.replace(s, stack=dataclasses.replace(
        s.stack, stack_auth=False)))
    (tmp_path / "state" / "kafka" / "data").mkdir(parents=True)  # created before, without credentials
    assert not stack.requires_credentials(s) and credentials.of_stack(s) is None
    credentials.create(s)
    assert stack.requires_credentials(s)
    credentials.wipe(s)
    assert credentials.read(s) == {}


# --- Kafka ACLs ----------------------------------------------------------------------------------------


def _can(rules: list[Rule], user: str, operation: str, name: str) -> bool:
    return any(r.user == user and r.operation == operation and r.name == name for r in rules)


USERS = {"kafka_sasl_username": "svc", "kafka_reader_username": "rdr", "kafka_worker_username": "wrk",
         "kafka_admin_username": "adm"}


@pytest.mark.parametrize(("user", "operation", "topic", "allowed"), [
    ("svc", "write", "events_topic", True),
    ("svc", "write", "chunks_topic", False),
    ("svc", "write", "dead_letter_topic", False),
    ("svc", "write", "updates_topic", False),
    ("svc", "write", "reads_topic", False),
    ("svc", "read", "updates_topic", False),
    ("svc", "read", "events_topic", False),
    ("rdr", "write", "reads_topic", True),
    ("rdr", "read", "updates_topic", True),
    ("rdr", "write", "events_topic", False),
    ("rdr", "write", "chunks_topic", False),
    ("rdr", "write", "updates_topic", False),
    ("wrk", "read", "events_topic", True),
    ("wrk", "read", "reads_topic", True),
    ("wrk", "write", "reads_topic", False),
    ("wrk", "read", "chunks_topic", True),
    ("wrk", "write", "chunks_topic", True),
    ("wrk", "write", "dead_letter_topic", True),
    ("wrk", "write", "updates_topic", True),
    ("wrk", "write", "events_topic", False),
    ("svc", "write", "notifications_topic", True),
    ("wrk", "read", "notifications_topic", True),
    ("wrk", "write", "notifications_topic", False),
    ("rdr", "write", "notifications_topic", False),
])
def test_acls_of_a_deployment(user: str, operation: str, topic: str, allowed: bool) -> None:
    s = Settings.load(env={}, **USERS).isolated("run-1")
    assert _can(access_rules(s), user, operation, getattr(s, topic)) is allowed


def test_acls_name_this_deployments_groups_and_nothing_without_users() -> None:
    s = Settings.load(env={}, **USERS).isolated("run-1")
    groups = {(r.user, r.name) for r in access_rules(s) if r.resource == "group"}
    assert groups == {("wrk", "run-1"), ("wrk", "run-1-notifier"), ("rdr", "run-1-read-updates")}
    assert access_rules(Settings.load(env={})) == []
    one_user = Settings.load(env={}, kafka_sasl_username="only", kafka_sasl_password="pw")
    assert one_user.kafka_credentials("worker") == one_user.kafka_credentials("admin") == ("only", "pw")
    assert one_user.kafka_credentials("reader") == ("only", "pw")
    assert {r.user for r in access_rules(one_user)} == {"only"}


class _LateBroker:
    """An admin client whose broker lists the ACLs it accepted only from its `lists_after`-th DescribeAcls."""

    def __init__(self, lists_after: int) -> None:
        self.lists_after, self.created, self.describes = lists_after, [], 0

    def create_acls(self, bindings, request_timeout):  # type: ignore[no-untyped-def]
        self.created = list(bindings)
        return {b: _answered(None) for b in bindings}

    def describe_acls(self, flt, request_timeout):  # type: ignore[no-untyped-def]
        self.describes += 1
        listed = self.created if self.describes >= self.lists_after else []
        return _answered([b for b in listed if (b.name, b.principal, b.operation) == (flt.name, flt.principal,
                                                                                      flt.operation)])


def _answered(result: object) -> concurrent.futures.Future:  # type: ignore[type-arg]
    future: concurrent.futures.Future = concurrent.futures.Future()  # type: ignore[type-arg]
    future.set_result(result)
    return future


def test_grant_returns_only_once_a_broker_lists_every_acl() -> None:
    s = Settings.load(env={}, **USERS).isolated("run-1")
    broker = _LateBroker(lists_after=30)
    assert grant(broker, s) == len(access_rules(s))  # type: ignore[arg-type]
    assert broker.describes >= 30  # it asked again until the broker listed them
    with pytest.raises(TimeoutError, match="does not list 14 ACLs"):
        grant(_LateBroker(lists_after=10**9), s, timeout=0.2)  # type: ignore[arg-type]


# --- the servers' config -------------------------------------------------------------------------------


def test_kafka_config_lines_with_and_without_credentials(tmp_path: Path) -> None:
    s = _stack(tmp_path)
    assert server_auth.kafka_template_values(s)["protocol"] == "PLAINTEXT"
    assert server_auth.kafka_format_args(s) == []
    made = credentials.create(s)
    values = server_auth.kafka_template_values(s)
    lines = dict(line.split("=", 1) for line in values["security"].splitlines())
    assert values["protocol"] == "SASL_PLAINTEXT"
    assert lines["super.users"] == "User:admin"  # not User:ANONYMOUS: the controller listener authenticates
    assert lines["allow.everyone.if.no.acl.found"] == "false"
    assert lines["sasl.mechanism.controller.protocol"] == "PLAIN"
    assert f'password="{made.kafka_admin_password}"' in lines["listener.name.controller.plain.sasl.jaas.config"]
    scram = server_auth.kafka_format_args(s)
    assert scram[::2] == ["--add-scram"] * 4
    assert {arg.split("name=")[1].split(",")[0] for arg in scram[1::2]} == {
        "admin", "fanout", "fanout-reader", "fanout-worker"}


def test_cassandra_flags_one_node_and_a_cluster(tmp_path: Path) -> None:
    s = _stack(tmp_path)
    assert server_auth.cassandra_flags(s) == [] and server_auth.cassandra_logins(s) == []
    credentials.create(s)
    one = server_auth.cassandra_flags(s)
    assert "-Dcassandra.settings.authenticator=PasswordAuthenticator" in one
    assert "-Dcassandra.superuser_setup_delay_ms=0" in one
    three = server_auth.cassandra_flags(dataclasses.replace(s, stack=dataclasses.replace(s.stack, nodes=3)))
    assert "-Dcassandra.system_auth.default_rf=3" in three
    assert [user for user, _ in server_auth.cassandra_logins(s)] == ["admin", "cassandra"]
