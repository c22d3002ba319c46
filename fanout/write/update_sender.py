"""The worker's feed updates, coalesced: the updates sent in one event-loop iteration go out as one message per
partition of the updates topic (a FeedUpdates envelope), not one message each.

The runner handles the authors of a batch of events concurrently, so at any moment many handlers are about
to send an update (a PostStored, a FollowChanged per follow...). A Kafka message costs the worker's producer
tens of microseconds of CPU whatever its size, which one message per follow made a visible share of the
worker's time. Like the writes of fanout/adapters/cassandra/batching.py, a
call here is not sent at once: every call of one iteration is gathered and flushed on the next.

Order is kept where read services rely on it, per author: an update goes to the partition its own key
would (the producer's murmur2 over the topic's partitions), given explicitly, so every update of one author
is on one partition, in the order sent, as before. Updates that must be applied in order (a post's
PostStored before its PostDelivered) are sent in one call: of one author, they travel in one envelope in
that order, or, cut by size, in messages handed to the producer in that order (it keeps a partition's
messages in order).

A caller's await returns when the messages holding its updates are acknowledged, or raises if one failed:
the runner's ack rule is unchanged, nothing is committed past an update not yet sent.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence

from aiokafka.partitioner import murmur2

from fanout.core.codec import encode, encode_feed_updates
from fanout.core.events import FeedUpdate
from fanout.settling import settling

# An envelope stays far below Kafka's default 1 MB message limit (an update larger than this, a PostDelivered
# of a big chunk, goes alone, as it did before envelopes).
MAX_ENVELOPE_BYTES = 256 * 1024
MAX_ENVELOPE_UPDATES = 2000

# (partition, key, value) -> when acknowledged
Publish = Callable[[int, bytes, bytes], Awaitable[None]]


def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (Java's, aiokafka's) gives a keyed message."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class UpdateSender:
    def __init__(self, publish: Publish, partitions: int) -> None:
        self.publish = publish
        self.partitions = partitions
        self._pending: list[tuple[FeedUpdate, asyncio.Future[None]]] = []

    async def send(self, updates: Sequence[FeedUpdate]) -> None:
        """Send these updates (an author's are applied in this order); returns once Kafka has every one of
        them, raises if one could not be sent."""
        if not updates:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._flush)
        self._pending.extend((update, future) for update in updates)
        await future

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        asyncio.ensure_future(settling(self._send(pending), [future for _, future in pending]))

    async def _send(self, pending: list[tuple[FeedUpdate, asyncio.Future[None]]]) -> None:
        by_partition: dict[int, list[tuple[FeedUpdate, asyncio.Future[None]]]] = defaultdict(list)
        for update, future in pending:
            by_partition[partition_of(update.key, self.partitions)].append((update, future))
        messages = [message for partition, items in by_partition.items() for message in _envelopes(partition, items)]
        outcomes = await asyncio.gather(*(self.publish(partition, key, value) for partition, key, value, _ in messages),
                                        return_exceptions=True)
        # A caller whose updates span several messages hears of the first failure, or of success once all are in.
        failed: dict[asyncio.Future[None], BaseException] = {}
        for (_, _, _, futures), outcome in zip(messages, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                failed.update((future, outcome) for future in futures if future not in failed)
        for _, future in pending:
            if future.done():
                continue
            if future in failed:
                future.set_exception(failed[future])
            else:
                future.set_result(None)


def _envelopes(partition: int, items: list[tuple[FeedUpdate, asyncio.Future[None]]]
               ) -> list[tuple[int, bytes, bytes, list[asyncio.Future[None]]]]:
    """The partition's updates, in order, as messages: a lone update as itself, several as FeedUpdates
    envelopes of at most MAX_ENVELOPE_UPDATES updates and MAX_ENVELOPE_BYTES."""
    messages: list[tuple[int, bytes, bytes, list[asyncio.Future[None]]]] = []
    run: list[tuple[FeedUpdate, bytes, asyncio.Future[None]]] = []
    size = 0

    def close_run() -> None:
        if len(run) == 1:
            update, value, future = run[0]
            messages.append((partition, update.key, value, [future]))
        elif run:
            value = encode_feed_updates([v for _, v, _ in run], max(u.event_time for u, _, _ in run))
            messages.append((partition, run[0][0].key, value, [f for _, _, f in run]))
        run.clear()

    for update, future in items:
        value = encode(update)
        if run and (len(run) >= MAX_ENVELOPE_UPDATES or size + len(value) > MAX_ENVELOPE_BYTES):
            close_run()
            size = 0
        run.append((update, value, future))
        size += len(value)
    close_run()
    return messages
