"""Publishing author events with confluent-kafka: idempotent, acks=all, Java-compatible partitioning.

`send` returns a concurrent future resolved when Kafka acknowledged the event (or failed it), so the
ingest service answers 202 only after the broker has the event. A background thread serves the
delivery callbacks.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from dataclasses import dataclass
from typing import Any, TypeVar

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from fanout.adapters.kafka_access import grant
from fanout.core.clock import wall_ms
from fanout.core.codec import encode
from fanout.core.events import (
    Event,
    Followed,
    Liked,
    Mentioned,
    PostCreated,
    PostDeleted,
    Replied,
    Unfollowed,
    Unliked,
    Unmentioned,
    UserSeen,
)
from fanout.core.ids import IdSource, PostIdGenerator, millis_of
from fanout.settings import KafkaPrincipal, Settings

E = TypeVar("E", bound=Event)
log = logging.getLogger(__name__)


def producer_config(settings: Settings, principal: KafkaPrincipal = "service", **extra: Any) -> dict[str, Any]:
    return {
        **settings.kafka_config(principal),
        "enable.idempotence": True,  # off by default in librdkafka
        "acks": "all",
        # librdkafka's default partitioner is CRC32-based; Faust/aiokafka and Java use murmur2.
        "partitioner": "murmur2_random",
        "linger.ms": 5,
        "compression.type": "lz4",
        "message.timeout.ms": settings.publish_timeout_ms,
        **extra,
    }


@dataclass(frozen=True)
class Delivered:
    topic: str
    partition: int
    offset: int


class PublishError(RuntimeError):
    """Kafka did not take the event (unreachable, timed out, queue full)."""


class EventProducer:
    def __init__(self, settings: Settings, node_id: int = 0, ids: IdSource | None = None,
                 principal: KafkaPrincipal = "service", **config: Any) -> None:
        """`ids` mints post ids (a leased node id, fanout/write/leases.py); without it, node `node_id` unleased.
        `principal`: the Kafka user it acts as; the read service's ("reader") may write feed reads only."""
        self.settings = settings
        self.topic = settings.events_topic
        self.ids: IdSource = ids or PostIdGenerator(node_id)
        self._producer = Producer(producer_config(settings, principal, **config))
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="kafka-delivery", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                self._producer.poll(0.05)
            except Exception:  # a failing callback must not end delivery for everyone after it
                log.exception("delivery callback failed")

    def send(self, event: Event, topic: str | None = None) -> concurrent.futures.Future[Delivered]:
        future: concurrent.futures.Future[Delivered] = concurrent.futures.Future()

        def delivered(err: KafkaError | None, msg: Message) -> None:
            if future.done():  # the waiter gave up (cancelled): nobody to tell
                return
            if err is not None:
                future.set_exception(PublishError(f"Kafka did not take {event.TYPE}: {err.str()}"))
            else:
                future.set_result(Delivered(msg.topic() or "", msg.partition() or 0, msg.offset() or 0))

        try:
            self._producer.produce(topic or self.topic_of(event), key=event.key, value=encode(event),
                                   on_delivery=delivered)
        except (BufferError, KafkaException) as exc:
            future.set_exception(PublishError(f"Kafka did not take {event.TYPE}: {exc}"))
        return future

    def topic_of(self, event: Event) -> str:
        """Feed reads have a topic of their own, written by the read service's user only; likes, replies and
        mentions go to the notifier's; the rest are author events (a follow also goes to the notifier's, sent
        there by name)."""
        if isinstance(event, UserSeen):
            return self.settings.reads_topic
        if isinstance(event, Liked | Unliked | Replied | Mentioned | Unmentioned):
            return self.settings.notifications_topic
        return self.topic

    async def send_async(self, event: Event, topic: str | None = None) -> Delivered:
        return await asyncio.wrap_future(self.send(event, topic))

    # --- the Python API ----------------------------------------------------------------------------

    def new_post(self, author_id: int, body: str) -> PostCreated:
        post_id = self.ids.next_id()
        return PostCreated(event_time=millis_of(post_id), post_id=post_id, author_id=author_id, body=body)

    def publish_post(self, author_id: int, body: str, timeout: float = 30.0) -> PostCreated:
        return self.publish(self.new_post(author_id, body), timeout)

    def delete_post(self, author_id: int, post_id: int, timeout: float = 30.0) -> PostDeleted:
        return self.publish(PostDeleted(event_time=wall_ms(), post_id=post_id, author_id=author_id), timeout)

    def follow(self, follower_id: int, followee_id: int, timeout: float = 30.0) -> Followed:
        return self.publish(Followed(event_time=wall_ms(), follower_id=follower_id, followee_id=followee_id), timeout)

    def unfollow(self, follower_id: int, followee_id: int, timeout: float = 30.0) -> Unfollowed:
        return self.publish(Unfollowed(event_time=wall_ms(), follower_id=follower_id, followee_id=followee_id),
                            timeout)

    def publish(self, event: E, timeout: float = 30.0) -> E:
        """Send one event and wait for Kafka's acknowledgement (PublishError if it does not come)."""
        self.send(event).result(timeout)
        return event

    def flush(self, timeout: float = 60.0) -> int:
        """Wait until every queued event is acknowledged; returns how many are still queued."""
        return int(self._producer.flush(timeout))

    def close(self) -> None:
        self.flush()
        self._stop.set()
        self._poller.join(timeout=5)


def delete_topics(settings: Settings, timeout: float = 30.0) -> None:
    """Delete the pipeline's topics of these settings (those that exist), as the Kafka admin: for
    deployments made for a while only, such as a benchmark's scenarios."""
    admin = AdminClient(settings.kafka_config("admin"))
    existing = set(admin.list_topics(timeout=timeout).topics)
    doomed = [t for t in (settings.events_topic, settings.chunks_topic, settings.dead_letter_topic,
                          settings.updates_topic, settings.reads_topic, settings.notifications_topic) if t in existing]
    if doomed:
        for fut in admin.delete_topics(doomed, operation_timeout=timeout).values():
            fut.result(timeout)


def ensure_topics(settings: Settings, timeout: float = 30.0) -> list[str]:
    """Create the pipeline's topics with the configured partitions, replicas and min.insync.replicas
    (existing ones are kept), as the Kafka admin, and grant the services and the worker their access
    (fanout/adapters/kafka_access.py). Returns the topics created."""
    admin = AdminClient(settings.kafka_config("admin"))
    config = {"min.insync.replicas": str(settings.min_insync_replicas)}
    # Read services read the feed updates from their end when they start: a day is plenty (live streams
    # resume from it).
    updates_config = {**config, "retention.ms": str(86_400_000)}
    wanted = [
        NewTopic(topic, partitions, settings.topic_replicas, config=topic_config)
        for topic, partitions, topic_config in (
            (settings.events_topic, settings.kafka_partitions, config),
            (settings.chunks_topic, settings.kafka_partitions, config),
            (settings.dead_letter_topic, 1, config),
            (settings.updates_topic, settings.kafka_partitions, updates_config),
            (settings.reads_topic, settings.kafka_partitions, config),
            (settings.notifications_topic, settings.kafka_partitions, config))
    ]
    existing = set(admin.list_topics(timeout=timeout).topics)
    missing = [t for t in wanted if t.topic not in existing]
    if missing:
        for fut in admin.create_topics(missing, operation_timeout=timeout).values():
            try:
                fut.result(timeout)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
    grant(admin, settings, timeout)
    return [t.topic for t in missing]
