"""confluent-kafka (our producers) and aiokafka (Faust's client) put every author key on the same
partition of a real topic: events about an author always reach the worker that owns that author."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer
from confluent_kafka.admin import AdminClient, NewTopic
from kafka_clients import aiokafka_kwargs

from fanout.adapters.kafka_access import grant
from fanout.core.events import PostCreated, author_key
from fanout.settings import Settings
from fanout.write.producer import EventProducer

pytestmark = pytest.mark.e2e
PARTITIONS = 8


def test_both_clients_send_each_author_key_to_the_same_partition(stack: Settings, unique: str) -> None:
    s = stack.isolated(f"partitioning-{unique}")
    admin = AdminClient(s.kafka_config("admin"))
    admin.create_topics([NewTopic(s.events_topic, PARTITIONS, 1)])[s.events_topic].result(30)
    grant(admin, s)  # the services' user may write the events topic (fanout/adapters/kafka_access.py)
    authors = [1, 2, 3, 42, 1_000_003, 987_654_321, 2**40 + 7, 2**63 - 1] + list(range(100, 160))
    producer = EventProducer(s)
    try:
        ours = {a: producer.send(PostCreated(event_time=1, post_id=a, author_id=a, body="x")).result(30).partition
                for a in authors}
    finally:
        producer.close()

    async def faust_side() -> dict[int, int]:
        aio = AIOKafkaProducer(**aiokafka_kwargs(s, "service"))
        await aio.start()
        try:
            return {a: (await aio.send_and_wait(s.events_topic, b"x", key=author_key(a))).partition for a in authors}
        finally:
            await aio.stop()

    theirs = asyncio.run(faust_side())
    admin.delete_topics([s.events_topic])
    assert len(set(ours.values())) > 1  # the keys really spread over partitions
    assert ours == theirs
