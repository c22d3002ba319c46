"""Feed updates from the worker to each read process: posts stored (with their tier) and deletes applied.

Every read process reads the whole updates topic, without a consumer group (each needs every update for
its own caches), from the end: its caches start empty, so nothing older can be stale in them. A thread
polls Kafka and hands each message's updates to the event loop, where the caches change (no locks needed).
A message holds one update or a FeedUpdates envelope of several (fanout/write/update_sender.py), applied in order.
If the listener misses updates (Kafka unreachable for a while), the caches' TTLs bound the staleness.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaError, TopicPartition

from fanout.adapters.kafka_access import updates_group
from fanout.core.codec import decode_feed_updates
from fanout.core.events import FeedUpdate, InvalidEvent
from fanout.settings import Settings

log = logging.getLogger(__name__)


class UpdatesListener:
    def __init__(self, settings: Settings, apply: Callable[[FeedUpdate], None],
                 loop: asyncio.AbstractEventLoop, assigned: threading.Event | None = None) -> None:
        self.settings = settings
        self.apply = apply
        self.loop = loop
        # Set once the consumer reads from the end of every partition: from then on no update is missed.
        self.assigned = assigned or threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="feed-updates", daemon=True)

    def start(self) -> UpdatesListener:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        topic = self.settings.updates_topic
        consumer = Consumer({
            **self.settings.kafka_config("reader"),
            "group.id": updates_group(self.settings),  # required by librdkafka; never committed
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        })
        try:
            while not self._stop.is_set():
                try:
                    partitions = consumer.list_topics(topic, timeout=5).topics[topic].partitions
                    # The end offsets now, explicitly: an update written after this point is never skipped.
                    ends = [TopicPartition(topic, p, consumer.get_watermark_offsets(TopicPartition(topic, p),
                                                                                    timeout=5)[1])
                            for p in partitions]
                    break
                except Exception as exc:  # Kafka not reachable yet: the caches' TTLs cover the gap
                    log.warning("feed updates: cannot read %s yet (%s)", topic, exc)
                    self._stop.wait(1.0)
            else:
                return
            consumer.assign(ends)
            self.assigned.set()
            while not self._stop.is_set():
                # Wait for one update, then take whatever else is already fetched: consume() alone would
                # hold a lone update back until its batch filled up or its timeout passed.
                first = consumer.poll(0.2)
                if first is None:
                    continue
                for message in [first, *consumer.consume(num_messages=500, timeout=0)]:
                    error = message.error()
                    if error is not None:
                        if error.code() != KafkaError._PARTITION_EOF:
                            log.warning("feed updates: %s", error)
                        continue
                    try:
                        updates = decode_feed_updates(message.value())
                    except InvalidEvent as exc:
                        log.warning("feed updates: ignored an invalid message: %s", exc)
                        continue
                    self.loop.call_soon_threadsafe(self._apply_all, updates)
        finally:
            consumer.close()

    def _apply_all(self, updates: tuple[FeedUpdate, ...]) -> None:
        for update in updates:
            self.apply(update)
