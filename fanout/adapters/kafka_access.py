"""Who may do what on a deployment's topics: the Kafka ACLs `fanout migrate` grants (as the admin).

`access_rules` is the decision, a pure function of the settings (tested with a table); `grant` hands it
to Kafka. The ACLs are LITERAL, on this deployment's topic and group names (tests' and benchmarks'
isolated names included: each run's migrate grants its own), because a name prefix would also cover
topics of other deployments on a shared cluster. Creating an ACL that exists is a no-op, so migrate
stays idempotent. Only the admin (a super user in the broker's config) creates topics.

- the services' user (the ingest API, `fanout publish`): writes events, nothing else.
- the read service's user: writes feed reads (debounced UserSeen); reads feed updates (its listener;
  librdkafka asks for its group's coordinator even though it only assigns).
- the worker's user: reads events, feed reads and chunks; writes chunks, dead letters and feed updates;
  its group.
None may write what another writes: the read service cannot publish a post, a service cannot forge chunk
tasks or dead letters. Without a user of its own, the read service is the services' user, which then holds
both sets.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from fanout.settings import Settings

KINDS = {"topic": ResourceType.TOPIC, "group": ResourceType.GROUP}
OPERATIONS = {"read": AclOperation.READ, "write": AclOperation.WRITE}


@dataclass(frozen=True)
class Rule:
    user: str
    resource: str  # "topic" or "group"
    name: str
    operation: str  # "read" or "write" (each implies describe)


def access_rules(settings: Settings) -> list[Rule]:
    """The ACLs of this deployment; none without SASL users."""
    service, _ = settings.kafka_credentials("service")
    reader, _ = settings.kafka_credentials("reader")
    worker, _ = settings.kafka_credentials("worker")
    if not service:
        return []
    s = settings
    return [
        Rule(service, "topic", s.events_topic, "write"),
        Rule(service, "topic", s.notifications_topic, "write"),
        Rule(reader, "topic", s.reads_topic, "write"),
        Rule(reader, "topic", s.updates_topic, "read"),
        Rule(reader, "group", updates_group(s), "read"),
        Rule(worker, "topic", s.events_topic, "read"),
        Rule(worker, "topic", s.reads_topic, "read"),
        Rule(worker, "topic", s.chunks_topic, "read"),
        Rule(worker, "topic", s.chunks_topic, "write"),
        Rule(worker, "topic", s.dead_letter_topic, "write"),
        Rule(worker, "topic", s.updates_topic, "write"),
        Rule(worker, "group", s.app_id, "read"),
        Rule(worker, "topic", s.notifications_topic, "read"),
        Rule(worker, "group", notifier_group(s), "read"),
    ]


def notifier_group(settings: Settings) -> str:
    """The notifier's consumer group, apart from the worker's: its lag is its own."""
    return f"{settings.app_id}-notifier"


def updates_group(settings: Settings) -> str:
    """The group id of the read service's feed-updates consumer (never committed: it only assigns)."""
    return f"{settings.app_id}-read-updates"


def grant(admin: AdminClient, settings: Settings, timeout: float = 30.0) -> int:
    """Create this deployment's ACLs (`admin` connected as the Kafka admin) and return how many, once a
    broker lists them all.

    The controller answers CreateAcls once the ACLs are in its metadata log; each broker applies that
    log on its own a moment later. A client that wrote the events topic right after the answer was once
    refused with "Topic authorization failed" (CI, one broker). So grant waits until a broker's
    DescribeAcls, which it answers from its own authorizer, lists every binding."""
    bindings = [AclBinding(KINDS[r.resource], r.name, ResourcePatternType.LITERAL, f"User:{r.user}", "*",
                           OPERATIONS[r.operation], AclPermissionType.ALLOW) for r in access_rules(settings)]
    if bindings:
        for future in admin.create_acls(bindings, request_timeout=timeout).values():
            future.result(timeout)
        _wait_until_listed(admin, bindings, time.monotonic() + timeout)
    return len(bindings)


def _wait_until_listed(admin: AdminClient, bindings: list[AclBinding], deadline: float) -> None:
    missing = list(bindings)
    while True:
        lookups = [(b, admin.describe_acls(_filter_for(b), request_timeout=max(deadline - time.monotonic(), 1)))
                   for b in missing]
        missing = [b for b, future in lookups if b not in future.result()]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"Kafka does not list {len(missing)} ACLs it accepted: {missing}")
        time.sleep(0.05)


def _filter_for(binding: AclBinding) -> AclBindingFilter:
    return AclBindingFilter(binding.restype, binding.name, binding.resource_pattern_type, binding.principal,
                            binding.host, binding.operation, binding.permission_type)
