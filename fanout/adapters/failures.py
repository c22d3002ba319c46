"""Which handler errors are an outage (wait, never park) and which belong to the event (retry, then park).

The rule: an error is an outage when the same event would very likely succeed once a server is back,
so parking it would throw a healthy event out of its partition's order:
- Cassandra unreachable, slow or short of replicas: NoHostAvailable, connection errors, client and
  server timeouts, Unavailable, overloaded or bootstrapping coordinators, read/write failures;
- Kafka unreachable while a chunk task or a dead letter is sent (aiokafka and confluent-kafka errors);
- the deployment, not the event: a keyspace or table that does not exist, missing credentials or
  permissions (an operator fixes them and every waiting event goes through);
- the network in general: ConnectionError, TimeoutError, OSError.
Everything else (a rejected statement, a bug that raises ValueError or KeyError on this event's data)
is the event's own failure: retried a few times, then parked with its reason so the partition moves on.
Only the error and its explicit causes (`raise ... from`) are looked at.
"""

from __future__ import annotations

from aiokafka.errors import KafkaError as AIOKafkaError
from cassandra import (
    AuthenticationFailed,
    InvalidRequest,
    OperationTimedOut,
    RequestExecutionException,
    Unauthorized,
)
from cassandra import protocol as cql_protocol
from cassandra.cluster import NoHostAvailable
from cassandra.connection import ConnectionException
from confluent_kafka import KafkaException

OUTAGES: tuple[type[BaseException], ...] = (
    RequestExecutionException,  # Unavailable, Read/WriteTimeout, Read/WriteFailure
    cql_protocol.RequestExecutionException,  # the same as server messages: Overloaded, IsBootstrapping
    OperationTimedOut,
    NoHostAvailable,
    ConnectionException,
    AuthenticationFailed,
    Unauthorized,
    AIOKafkaError,
    KafkaException,
    OSError,  # ConnectionError, TimeoutError (asyncio's too), socket errors
)

# A statement the server rejects because the schema is not there: the deployment, not the event.
MISSING_SCHEMA = ("does not exist", "unconfigured table", "no keyspace has been specified")


def is_outage(error: BaseException) -> bool:
    """True when `error` (or an explicit cause of it) says a server or the deployment is at fault."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OUTAGES):
            return True
        if isinstance(current, InvalidRequest) and any(s in str(current).lower() for s in MISSING_SCHEMA):
            return True
        current = current.__cause__
    return False
