"""How far the worker group is behind: committed offsets against the topics' high watermarks.

Faust commits an offset only after its agent finished the event, so a lag of zero on both the event
and chunk topics means every accepted event has been fully processed.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from confluent_kafka import Consumer, TopicPartition

from fanout.settings import Settings


def consumer_lag(settings: Settings) -> int:
    """Events not yet processed by the worker group, summed over the event and chunk topics. Asked as the
    worker's Kafka user, which may read the group's offsets (it never joins the group: no subscribe)."""
    consumer = Consumer({**settings.kafka_config("worker"), "group.id": settings.app_id,
                         "enable.auto.commit": False})
    try:
        lag = 0
        for topic in (settings.events_topic, settings.chunks_topic):
            meta = consumer.list_topics(topic, timeout=10).topics[topic]
            partitions = [TopicPartition(topic, p) for p in meta.partitions]
            for tp in consumer.committed(partitions, timeout=10):
                _, high = consumer.get_watermark_offsets(tp, timeout=10)
                lag += high - (tp.offset if tp.offset >= 0 else 0)
        return lag
    finally:
        consumer.close()


def wait_until_drained(settings: Settings, timeout: float = 300.0, poll: float = 0.5,
                       on_lag: Callable[[int], None] | None = None) -> float:
    """Block until the worker group has no lag; returns the seconds waited. Raises TimeoutError."""
    started = time.monotonic()
    while True:
        lag = consumer_lag(settings)
        if on_lag:
            on_lag(lag)
        if lag == 0:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"worker group {settings.app_id} still {lag} events behind after {timeout:.0f}s")
        time.sleep(poll)
