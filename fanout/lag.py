"""How far the worker group is behind: committed offsets against the topics' high watermarks.

Faust commits an offset only after its agent finished the event, so a lag of zero on both the event
and chunk topics means every accepted event has been fully processed.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from confluent_kafka import Consumer, TopicPartition

from fanout.adapters.kafka_access import notifier_group
from fanout.settings import Settings


class LagMeter:
    """Asks for the worker group's lag as often as needed over one connection: a new client per question
    would log in to Kafka again each time (a SCRAM exchange on each side), work that a benchmark polling
    the lag would add to the broker it measures. Asked as the worker's Kafka user, which may read the
    group's offsets (it never joins the group: no subscribe)."""

    def __init__(self, settings: Settings, notifier: bool = False) -> None:
        """The worker group's lag; with `notifier`, the notifier group's (on the notifications topic)."""
        self.settings = settings
        self.topics = ((settings.notifications_topic,) if notifier else
                       (settings.events_topic, settings.reads_topic, settings.chunks_topic))
        group = notifier_group(settings) if notifier else settings.app_id
        self.consumer = Consumer({**settings.kafka_config("worker"), "group.id": group, "enable.auto.commit": False})

    def lag(self) -> int:
        """Events not yet processed by the group, summed over its topics."""
        lag = 0
        for topic in self.topics:
            meta = self.consumer.list_topics(topic, timeout=10).topics[topic]
            partitions = [TopicPartition(topic, p) for p in meta.partitions]
            for tp in self.consumer.committed(partitions, timeout=10):
                _, high = self.consumer.get_watermark_offsets(tp, timeout=10)
                lag += high - (tp.offset if tp.offset >= 0 else 0)
        return lag

    def close(self) -> None:
        self.consumer.close()

    def __enter__(self) -> LagMeter:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def consumer_lag(settings: Settings, notifier: bool = False) -> int:
    """The worker group's (or the notifier's) lag, asked once (see LagMeter)."""
    with LagMeter(settings, notifier) as meter:
        return meter.lag()


def wait_until_drained(settings: Settings, timeout: float = 300.0, poll: float = 0.5,
                       on_lag: Callable[[int], None] | None = None) -> float:
    """Block until the worker group has no lag; returns the seconds waited. Raises TimeoutError."""
    started = time.monotonic()
    with LagMeter(settings) as meter:
        while True:
            lag = meter.lag()
            if on_lag:
                on_lag(lag)
            if lag == 0:
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"worker group {settings.app_id} still {lag} events behind after {timeout:.0f}s")
            time.sleep(poll)
