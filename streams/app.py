"""The Faust app: topics and two thin agents (decode -> pipeline -> store).

Built by `build_app` from its dependencies, never at import time. Each agent runs with concurrency 1
and takes events in batches: the events of different authors in a batch run concurrently, those of
one author in order, and the batch is acknowledged only when all of it is written, so Faust never
commits an offset past an event still in flight (faust-streaming #606). Throughput also comes from the
write window inside one event, from chunk tasks, and from more partitions and workers.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import defaultdict
from typing import Any

import faust

from fanout.events import ChunkTask, InvalidEvent, decode_author_event, decode_chunk_task, encode
from fanout.metrics import Metrics
from fanout.pipeline import Pipeline
from fanout.settings import Settings

log = logging.getLogger(__name__)

# Exit code of a worker that stopped because an event could not be processed after all retries. The
# event was not acknowledged, so the restarted worker (compose `restart: unless-stopped`) processes it again.
EXIT_UNPROCESSED = 75


def build_app(settings: Settings, metrics: Metrics, pipeline_for: Any) -> faust.App:
    """The worker's Faust app. `pipeline_for(send_task)` builds the Pipeline once topics exist."""
    datadir = settings.state_dir / "faust"
    datadir.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        topic_partitions=settings.kafka_partitions,
        topic_disable_leader=True,
        web_enabled=False,  # metrics come from prometheus_client on the worker metrics port
        consumer_auto_offset_reset="earliest",
        autodiscover=False,
        broker_commit_every=100,
        broker_commit_interval=1.0,
        datadir=str(datadir / settings.app_id),  # not a folder per app in the working directory
    )
    def raw_topic(name: str, partitions: int) -> faust.TopicT:
        # Bytes in, bytes out: we decode and validate ourselves, so bad input can be dead-lettered.
        return app.topic(name, partitions=partitions, key_type=bytes, value_type=bytes,
                         key_serializer="raw", value_serializer="raw")

    events = raw_topic(settings.events_topic, settings.kafka_partitions)
    chunks = raw_topic(settings.chunks_topic, settings.kafka_partitions)
    dead_letters = raw_topic(settings.dead_letter_topic, 1)

    async def send_task(task: ChunkTask) -> None:
        delivered = await chunks.send(key=task.key, value=encode(task), force=True)
        await delivered  # acknowledged by Kafka before the event that produced it is done

    pipeline: Pipeline = pipeline_for(send_task)

    async def dead_letter(event: Any, error: InvalidEvent, source: str) -> None:
        metrics.dead_lettered.labels(error.reason).inc()
        log.warning("dead-lettered an event from %s[%s]@%s: %s", source, event.message.partition,
                    event.message.offset, error)
        headers = [
            ("reason", error.reason.encode()),
            ("error", error.detail.encode()[:1000]),
            ("source_topic", source.encode()),
            ("source_partition", str(event.message.partition).encode()),
            ("source_offset", str(event.message.offset).encode()),
        ]
        delivered = await dead_letters.send(key=event.key, value=event.value, headers=headers, force=True)
        await delivered

    async def handle_in_order(events: list[Any], source: str) -> None:
        for decoded in events:
            try:
                await pipeline.handle(decoded)
            except Exception:
                # Faust would mark the event done if the agent raised. Stop hard instead: this event (and
                # its batch) is not committed, and the restarted worker retries it (writes are idempotent).
                log.critical("could not process %s from %s; stopping the worker unacknowledged",
                             decoded.TYPE, source, exc_info=True)
                logging.shutdown()
                os._exit(EXIT_UNPROCESSED)

    async def process(stream: Any, source: str, decoder: Any) -> None:
        """Batches of events: invalid ones dead-lettered, the rest grouped by key (author), groups run
        concurrently and each group in order. Faust acks a batch only once this returns for it, so no
        offset is committed past an event still in flight (faust-streaming #606)."""
        async for batch in stream.take_events(settings.batch_events, within=settings.batch_seconds):
            try:
                by_key: dict[bytes, list[Any]] = defaultdict(list)
                for event in batch:
                    try:
                        by_key[event.key].append(decoder(event.value, event.key))
                    except InvalidEvent as error:
                        await dead_letter(event, error, source)
                await asyncio.gather(*(handle_in_order(events, source) for events in by_key.values()))
            except Exception:
                # Anything escaping here (e.g. the dead-letter topic unreachable) would let Faust restart the
                # agent and ack the whole batch, processed or not. Stop unacknowledged instead.
                log.critical("could not finish a batch from %s; stopping the worker unacknowledged", source,
                             exc_info=True)
                logging.shutdown()
                os._exit(EXIT_UNPROCESSED)

    @app.agent(events, concurrency=1)
    async def author_events(stream: Any) -> None:
        await process(stream, settings.events_topic,
                      lambda value, key: decode_author_event(value, key, settings.max_event_bytes))

    @app.agent(chunks, concurrency=1)
    async def chunk_tasks(stream: Any) -> None:
        await process(stream, settings.chunks_topic,
                      lambda value, key: decode_chunk_task(value))

    return app
