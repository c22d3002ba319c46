"""The servers' side of credentials in the local stack (deploy/credentials.py holds the values).

Kafka: the client listener speaks SASL_PLAINTEXT with SCRAM (FANOUT_KAFKA_SASL_MECHANISM); the three users
are written into the metadata when the storage is formatted (`StorageTool format --add-scram`, KIP-900),
so they exist from the first start and nothing waits for them. The controller listener is authenticated
too, with PLAIN and the admin user in the broker's own JAAS config: a PLAINTEXT controller would need
User:ANONYMOUS as a super user, and then anyone on the host could change the cluster's configs through it
(verified). StandardAuthorizer with allow.everyone.if.no.acl.found=false: only the admin (super user)
may do anything not granted; the ACLs per deployment are `fanout migrate`'s (fanout/adapters/kafka_access.py).

Cassandra: PasswordAuthenticator, CassandraRoleManager and CassandraAuthorizer, set as system properties
(`-Dcassandra.settings.<key>`, read by Cassandra 5.0 over cassandra.yaml) so docker-compose.yml sets
them the same way, through JVM_EXTRA_OPTS. The default superuser cassandra/cassandra appears
`superuser_setup_delay_ms` after start (10 s upstream, so a cluster settles first): 0 on one node, where
there is nothing to wait for. After start `provision` logs in with it once, creates the admin and the
project's role (allowed to CREATE keyspaces, so it owns and may alter what it creates: `fanout migrate`,
tests' keyspaces) and drops it. On N nodes system_auth gets min(3, N) replicas from its creation
(`cassandra.system_auth.default_rf`): auth reads are LOCAL_QUORUM, so with one replica a single node
down would refuse every login whose role it holds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tenacity

from deploy import credentials
from deploy.errors import StackError
from fanout import retries
from fanout.settings import CASSANDRA_PROCESSES, Settings

KAFKA_AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
CASSANDRA_AUTH = {"authenticator": "PasswordAuthenticator", "authorizer": "CassandraAuthorizer",
                  "role_manager": "CassandraRoleManager"}
DEFAULT_SUPERUSER = ("cassandra", "cassandra")


def kafka_template_values(stack: Settings) -> dict[str, str]:
    """The listener protocol and security lines of deploy/templates/kafka-server.properties."""
    s = credentials.of_stack(stack)
    if s is None:
        return {"protocol": "PLAINTEXT", "security": "# no authentication (FANOUT_STACK_AUTH=false)"}
    mechanism, admin, password = s.kafka_sasl_mechanism, s.kafka_admin_username, s.kafka_admin_password
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule"
    plain = "org.apache.kafka.common.security.plain.PlainLoginModule"
    lines = [
        f"sasl.enabled.mechanisms={mechanism}",
        f"sasl.mechanism.inter.broker.protocol={mechanism}",
        f'listener.name.sasl_plaintext.{mechanism.lower()}.sasl.jaas.config={scram} required '
        f'username="{admin}" password="{password}";',
        "sasl.mechanism.controller.protocol=PLAIN",
        "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
        f'listener.name.controller.plain.sasl.jaas.config={plain} required username="{admin}" '
        f'password="{password}" user_{admin}="{password}";',
        f"authorizer.class.name={KAFKA_AUTHORIZER}",
        f"super.users=User:{admin}",
        "allow.everyone.if.no.acl.found=false",
    ]
    return {"protocol": "SASL_PLAINTEXT", "security": "\n".join(lines)}


def kafka_format_args(stack: Settings) -> list[str]:
    """`--add-scram` for every user of the stack (the admin, the services', the read service's, the
    worker's)."""
    s = credentials.of_stack(stack)
    if s is None:
        return []
    users = dict(s.kafka_credentials(p) for p in ("admin", "service", "reader", "worker"))
    return [arg for user, password in users.items()
            for arg in ("--add-scram", f"{s.kafka_sasl_mechanism}=[name={user},password={password}]")]


def cassandra_flags(s: Settings) -> list[str]:
    if credentials.of_stack(s) is None:
        return []
    settings = ["-Dcassandra.config.allow_system_properties=true",
                *(f"-Dcassandra.settings.{key}={value}" for key, value in CASSANDRA_AUTH.items())]
    if s.stack.nodes == 1:
        return [*settings, "-Dcassandra.superuser_setup_delay_ms=0"]
    # A failed setup is retried after the same delay: 0 would spin until a quorum of nodes is up.
    return [*settings, "-Dcassandra.superuser_setup_delay_ms=1000",
            f"-Dcassandra.system_auth.default_rf={min(3, s.stack.nodes)}"]


def kafka_admin_config(stack: Settings) -> dict[str, Any]:
    """librdkafka settings of the stack's admin (the launcher's readiness check)."""
    s = credentials.of_stack(stack)
    return s.kafka_config("admin") if s else {}


def cassandra_logins(stack: Settings) -> list[tuple[str, str]]:
    """Who readiness may log in as: the admin, or on a new node the default superuser (before `provision`);
    nobody for a stack without credentials."""
    s = credentials.of_stack(stack)
    return [(s.cassandra_admin_username, s.cassandra_admin_password), DEFAULT_SUPERUSER] if s else []


def provision(stack: Settings, say: Callable[[str], None]) -> None:
    """The launcher's step after the servers are ready: the stack's Cassandra roles, if it has credentials."""
    s = credentials.of_stack(stack)
    if s is not None:
        create_roles(s, say)


def create_roles(s: Settings, say: Callable[[str], None], timeout: float = 60.0) -> None:
    """Create the Cassandra superuser FANOUT_CASSANDRA_ADMIN_* (logged in once as the default superuser of
    a new cluster), the project's role FANOUT_CASSANDRA_* (owns the schema) and each process's role
    (FANOUT_CASSANDRA_{WORKER,INGEST,READER}_*), and drop the default superuser. Idempotent:
    the launcher runs it at every start, `fanout migrate` whenever it has the admin's credentials (compose)."""
    from cassandra import AuthenticationFailed
    from cassandra.cluster import NoHostAvailable

    admin = (s.cassandra_admin_username, s.cassandra_admin_password)
    try:
        session_as = _session(s, *admin)
    except NoHostAvailable as exc:
        if not all(isinstance(e, AuthenticationFailed) for e in exc.errors.values()):
            raise
        # A new node creates the default superuser a moment (superuser_setup_delay_ms) after it answers.
        with _retrying(lambda: _session(s, *DEFAULT_SUPERUSER), timeout, "the default superuser") as first:
            first.execute(f"CREATE ROLE IF NOT EXISTS {admin[0]} WITH SUPERUSER = true AND LOGIN = true "
                          f"AND PASSWORD = '{admin[1]}'")
        # The new role's login can be refused until the credentials cache (2 s) forgets the failed one.
        session_as = _retrying(lambda: _session(s, *admin), timeout, f"the new superuser {admin[0]}")
        say(f"cassandra: created the superuser {admin[0]}")
    with session_as as session:
        session.execute(f"CREATE ROLE IF NOT EXISTS {s.cassandra_username} WITH LOGIN = true "
                        f"AND PASSWORD = '{s.cassandra_password}'")
        # The role may create keyspaces, and its creator is granted everything on what it creates.
        session.execute(f"GRANT CREATE ON ALL KEYSPACES TO {s.cassandra_username}")
        # Each process's own role: a login, and no permission until `fanout migrate` grants it some on a
        # keyspace (fanout/adapters/cassandra/migrations.py).
        for process in CASSANDRA_PROCESSES:
            user, password = (getattr(s, f"cassandra_{process}_{part}") for part in ("username", "password"))
            if user and user != s.cassandra_username:
                session.execute(f"CREATE ROLE IF NOT EXISTS {user} WITH LOGIN = true AND PASSWORD = '{password}'")
        session.execute(f"DROP ROLE IF EXISTS {DEFAULT_SUPERUSER[0]}")


class _Session:
    """A driver session that closes its cluster on exit."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        self.session = cluster.connect()
        self.session.default_timeout = 30

    def __enter__(self) -> Any:
        return self.session

    def __exit__(self, *exc: object) -> None:
        self.cluster.shutdown()


def _session(s: Settings, user: str, password: str) -> _Session:
    from cassandra.auth import PlainTextAuthProvider
    from cassandra.cluster import Cluster

    cluster = Cluster(s.cassandra_contact_points, port=s.cassandra_port, protocol_version=4, connect_timeout=10,
                      auth_provider=PlainTextAuthProvider(user, password))
    try:
        return _Session(cluster)
    except Exception:
        cluster.shutdown()
        raise


def _retrying(connect: Callable[[], _Session], timeout: float, who: str) -> _Session:
    """`connect()`, tried again (Cassandra still starting, the new role not yet known) for up to `timeout`."""
    retrying = tenacity.Retrying(stop=tenacity.stop_after_delay(timeout), wait=retries.backoff(0.25, 2.0), reraise=True)
    try:
        return retrying(connect)
    except Exception as exc:
        raise StackError(f"cassandra: {who} cannot log in after {timeout:.0f}s: {exc}") from exc
