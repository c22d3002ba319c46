"""The Faust app: topics and three thin agents (author events, feed reads, chunk tasks) that hand each batch
of events to a `BatchRunner`.

Built by `build_app` from its dependencies, never at import time. Each agent runs with concurrency 1
and takes events in batches, `batches_in_flight` of them at once (fanout/write/runner.py says why that is safe
and fast). Throughput also comes from the write window inside one event, from chunk tasks, and from more
partitions and workers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import faust

from fanout.core.clock import wall_ms
from fanout.core.codec import E, check_event, decode_author_event, decode_chunk_task, decode_feed_read, encode
from fanout.core.events import ChunkTask
from fanout.metrics import Metrics
from fanout.settings import Settings
from fanout.write.pipeline import Pipeline, SendTask, SendUpdates
from fanout.write.runner import BatchRunner, InFlight, RetryPolicy
from fanout.write.update_sender import UpdateSender


def build_app(settings: Settings, metrics: Metrics, pipeline_for: Callable[[SendTask, SendUpdates], Pipeline],
              on_rebalance: Callable[[], None] = lambda: None) -> faust.App:
    """The worker's Faust app. `pipeline_for(send_task, send_updates)` builds the Pipeline once topics exist;
    `on_rebalance` runs whenever partitions are revoked or assigned (the author stats cache forgets)."""
    app = faust_app(settings, settings.app_id)

    def raw_topic(name: str, partitions: int) -> faust.TopicT:
        return bytes_topic(app, name, partitions)

    events = raw_topic(settings.events_topic, settings.kafka_partitions)
    reads = raw_topic(settings.reads_topic, settings.kafka_partitions)
    chunks = raw_topic(settings.chunks_topic, settings.kafka_partitions)
    dead_letters = raw_topic(settings.dead_letter_topic, 1)
    updates = raw_topic(settings.updates_topic, settings.kafka_partitions)

    async def send_task(task: ChunkTask) -> None:
        delivered = await chunks.send(key=task.key, value=encode(task), force=True)
        await delivered  # acknowledged by Kafka before the event that produced it is done

    async def send_dead_letter(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> None:
        delivered = await dead_letters.send(key=key, value=value, headers=headers, force=True)
        await delivered

    async def publish_update(partition: int, key: bytes, value: bytes) -> None:
        delivered = await updates.send(key=key, value=value, partition=partition, force=True)
        await delivered

    # The updates of one event-loop iteration, one message per partition (fanout/write/update_sender.py).
    send_updates = UpdateSender(publish_update, settings.kafka_partitions).send

    def partitions_moved(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        on_rebalance()

    app.on_partitions_revoked.connect(partitions_moved)
    app.on_partitions_assigned.connect(partitions_moved)

    pipeline = pipeline_for(send_task, send_updates)
    policy = RetryPolicy.of(settings)
    def checked(event: E) -> E:  # the API's contract on times and ids (fanout/core/codec.py check_event)
        return check_event(event, wall_ms(), settings.event_max_future_ms)

    author_runner = BatchRunner(settings.events_topic,
                                lambda value, key: checked(decode_author_event(value, key, settings.max_event_bytes)),
                                pipeline.handle, send_dead_letter, metrics, policy, handle_group=pipeline.handle_group)
    # Feed reads come from the read services' own topic (their Kafka user cannot write author events). A
    # UserSeen was always handled concurrently with the follows of its reader, which are keyed by the
    # followee (fanout/write/handlers/graph.py), so a topic of its own changes no order the handlers rely on.
    read_runner = BatchRunner(settings.reads_topic,
                              lambda value, key: checked(decode_feed_read(value, key, settings.max_event_bytes)),
                              pipeline.handle, send_dead_letter, metrics, policy)
    chunk_runner = BatchRunner(settings.chunks_topic, lambda value, key: decode_chunk_task(value),
                               pipeline.handle, send_dead_letter, metrics, policy)

    @app.agent(events, concurrency=1)
    async def author_events(stream: Any) -> None:
        await consume(stream, author_runner, settings.batch_events, settings.batch_seconds,
                      settings.batches_in_flight)

    @app.agent(reads, concurrency=1)
    async def feed_reads(stream: Any) -> None:
        await consume(stream, read_runner, settings.batch_events, settings.batch_seconds,
                      settings.batches_in_flight)

    @app.agent(chunks, concurrency=1)
    async def chunk_tasks(stream: Any) -> None:
        await consume(stream, chunk_runner, settings.chunk_batch_events, settings.batch_seconds,
                      settings.batches_in_flight)

    return app


def faust_app(settings: Settings, app_id: str) -> faust.App:
    """A Faust app (its consumer group: `app_id`) as the worker's Kafka user, committing what its agents
    acknowledge."""
    datadir = settings.worker_data_dir
    datadir.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
    worker_user, worker_password = settings.kafka_credentials("worker")
    return faust.App(
        app_id,
        broker=";".join(f"kafka://{server}" for server in settings.kafka_bootstrap.split(",")),
        store="memory://",
        topic_partitions=settings.kafka_partitions,
        topic_replication_factor=settings.topic_replicas,
        topic_disable_leader=True,
        web_enabled=False,  # metrics come from prometheus_client on the process's metrics port
        consumer_auto_offset_reset="earliest",
        autodiscover=False,
        broker_commit_every=100,
        # A killed worker's partitions move to the others after this (Faust's default is 60 s).
        broker_session_timeout=settings.worker_session_timeout,
        broker_heartbeat_interval=min(3.0, settings.worker_session_timeout / 5),
        broker_commit_interval=1.0,
        datadir=str(datadir / app_id),  # not a folder per app in the working directory
        # The worker's own Kafka user: the only one allowed to write the chunk and dead-letter topics.
        broker_credentials=(faust.SASLCredentials(username=worker_user, password=worker_password,
                                                  mechanism=settings.kafka_sasl_mechanism)
                            if worker_user else None),
    )


def bytes_topic(app: faust.App, name: str, partitions: int) -> faust.TopicT:
    """Bytes in, bytes out: events are decoded and validated by the runner, so bad input can be dead-lettered."""
    return app.topic(name, partitions=partitions, key_type=bytes, value_type=bytes,
                     key_serializer="raw", value_serializer="raw")


async def consume(stream: Any, runner: BatchRunner, size: int, within: float, in_flight: int) -> None:
    """Hand `stream`'s events to `runner` in batches of up to `size`, each what came in `within` seconds at most,
    `in_flight` batches at once. noack_take: Faust acknowledges nothing itself; InFlight acknowledges each batch
    once it and every batch before it are written."""
    batches = InFlight(runner, stream.ack, in_flight)
    try:
        async for batch in stream.noack_take(size, within=within):
            await batches.submit(batch)
    finally:
        batches.cancel()
