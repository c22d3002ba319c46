"""The worker's feed updates coalesced into one message per partition (fanout/write/update_sender.py)."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.partitioner import DefaultPartitioner

from fanout.core.codec import decode_feed_updates
from fanout.core.events import FeedUpdate, FollowChanged, PostDelivered, PostStored
from fanout.write.update_sender import MAX_ENVELOPE_BYTES, MAX_ENVELOPE_UPDATES, UpdateSender, partition_of

T = 1_700_000_000_000
PARTITIONS = 6


class Topic:
    """Records what was published; `fail` names partitions whose messages fail."""

    def __init__(self, fail: frozenset[int] = frozenset()) -> None:
        self.messages: list[tuple[int, bytes, tuple[FeedUpdate, ...]]] = []
        self.fail = fail

    async def publish(self, partition: int, key: bytes, value: bytes) -> None:
        await asyncio.sleep(0)
        if partition in self.fail:
            raise ConnectionError(f"partition {partition} is not reachable")
        self.messages.append((partition, key, decode_feed_updates(value)))

    def on(self, partition: int) -> list[FeedUpdate]:
        return [u for p, _, updates in self.messages if p == partition for u in updates]


def follow(follower: int, followee: int, following: bool = True) -> FollowChanged:
    return FollowChanged(event_time=T + follower, follower_id=follower, followee_id=followee, following=following)


def test_the_partition_is_the_default_partitioners() -> None:
    partitioner = DefaultPartitioner()
    for author in range(1, 200):
        key = str(author).encode()
        assert partition_of(key, PARTITIONS) == partitioner(key, list(range(PARTITIONS)), list(range(PARTITIONS)))


def test_updates_sent_together_go_as_one_message_per_partition_in_order() -> None:
    topic = Topic()
    sender = UpdateSender(topic.publish, PARTITIONS)
    updates = [follow(f, a, following=f % 3 != 0) for f in range(1, 40) for a in (5, 6, 7, 8, 9)]

    async def run() -> None:
        await asyncio.gather(*(sender.send([u]) for u in updates))

    asyncio.run(run())
    partitions = {partition_of(u.key, PARTITIONS) for u in updates}
    assert sorted(p for p, _, _ in topic.messages) == sorted(partitions)  # one message each
    for partition in partitions:
        assert topic.on(partition) == [u for u in updates if partition_of(u.key, PARTITIONS) == partition]
    for partition, key, _ in topic.messages:
        assert partition_of(key, PARTITIONS) == partition


def test_a_lone_update_is_sent_as_itself_and_one_calls_updates_go_together_in_order() -> None:
    topic = Topic()
    sender = UpdateSender(topic.publish, PARTITIONS)
    stored = PostStored(event_time=T, post_id=1, author_id=7, tier="push", body="hi")
    delivered = PostDelivered(event_time=T, post_id=1, author_id=7, user_ids=(1, 2))

    async def run() -> None:
        await sender.send([stored])
        await sender.send([delivered])
        await sender.send([stored, delivered])
        await sender.send([])

    asyncio.run(run())
    assert [updates for _, _, updates in topic.messages] == [(stored,), (delivered,), (stored, delivered)]


def test_envelopes_are_cut_by_count_and_by_size() -> None:
    topic = Topic()
    sender = UpdateSender(topic.publish, 1)
    many = [follow(f, 7) for f in range(1, MAX_ENVELOPE_UPDATES + 2)]
    big = [PostStored(event_time=T, post_id=i, author_id=7, tier="push", body="x" * 5000) for i in range(1, 120)]

    async def run(updates: list[FeedUpdate]) -> None:
        await asyncio.gather(*(sender.send([u]) for u in updates))

    asyncio.run(run(many))
    assert [len(updates) for _, _, updates in topic.messages] == [MAX_ENVELOPE_UPDATES, 1]
    topic.messages.clear()
    asyncio.run(run(big))
    assert len(topic.messages) > 1
    assert all(len(updates) * 5000 < MAX_ENVELOPE_BYTES for _, _, updates in topic.messages)
    assert topic.on(0) == big


def test_a_failed_message_fails_only_its_own_callers() -> None:
    updates = [follow(f, a) for f in range(1, 5) for a in range(1, 30)]
    failing = partition_of(updates[0].key, PARTITIONS)
    topic = Topic(fail=frozenset({failing}))
    sender = UpdateSender(topic.publish, PARTITIONS)

    async def run() -> list[BaseException | None]:
        return list(await asyncio.gather(*(sender.send([u]) for u in updates), return_exceptions=True))

    outcomes = asyncio.run(run())
    for update, outcome in zip(updates, outcomes, strict=True):
        if partition_of(update.key, PARTITIONS) == failing:
            assert isinstance(outcome, ConnectionError)
        else:
            assert outcome is None
    assert failing not in {p for p, _, _ in topic.messages}


def test_a_caller_returns_only_once_its_message_is_acknowledged() -> None:
    async def run() -> None:
        ack = asyncio.Event()

        async def publish(partition: int, key: bytes, value: bytes) -> None:
            await ack.wait()

        sender = UpdateSender(publish, PARTITIONS)
        task = asyncio.ensure_future(sender.send([follow(1, 7)]))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not task.done()
        ack.set()
        await asyncio.wait_for(task, 1)

    asyncio.run(run())


@pytest.mark.parametrize("partitions", [1, 3, 12])
def test_every_update_is_published_once(partitions: int) -> None:
    topic = Topic()
    sender = UpdateSender(topic.publish, partitions)
    updates = [follow(f, a) for f in range(1, 20) for a in range(1, 20)]

    async def run() -> None:
        await asyncio.gather(*(sender.send([u]) for u in updates[:150]))
        await asyncio.gather(*(sender.send([u]) for u in updates[150:]))

    asyncio.run(run())
    published = [u for _, _, batch in topic.messages for u in batch]
    assert sorted(published, key=updates.index) == updates


def test_a_call_whose_updates_span_messages_waits_for_all_and_fails_if_one_fails() -> None:
    updates = [follow(1, a) for a in range(1, 40)]
    failing = partition_of(updates[-1].key, PARTITIONS)

    async def run(topic: Topic) -> None:
        await UpdateSender(topic.publish, PARTITIONS).send(updates)

    whole = Topic()
    asyncio.run(run(whole))
    assert len(whole.messages) > 1
    assert sorted((u for _, _, batch in whole.messages for u in batch), key=updates.index) == updates
    with pytest.raises(ConnectionError):
        asyncio.run(run(Topic(fail=frozenset({failing}))))


def test_an_update_that_cannot_be_encoded_fails_its_caller_instead_of_hanging() -> None:
    unencodable = FollowChanged(event_time=T, follower_id=object(), followee_id=7, following=True)  # type: ignore[arg-type]

    async def run() -> None:
        await asyncio.wait_for(UpdateSender(Topic().publish, PARTITIONS).send([unencodable]), 2)

    with pytest.raises(TypeError):
        asyncio.run(run())
