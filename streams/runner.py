"""The worker's batch runner: decode, dead-letter, group by author, handle, and the one way out.

Faust hands an agent batches of events and acknowledges a batch when the agent moves on to the next one.
The runner makes that safe (faust-streaming #606: with concurrency > 1 Faust can commit past an event
still in flight): the events of a batch are grouped by key (the author), groups run concurrently and
each group in order, and `run` returns only when every event of the batch is written or dead-lettered.

Anything else, a handler that failed after its retries or a dead-letter topic that cannot be reached,
ends in `stop`: Faust would otherwise mark the event done although it was never processed. By default
`stop` ends the process at once, unacknowledged (exit 75), and the restarted worker processes the batch
again; every write is idempotent, so that is safe.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NoReturn, Protocol

from fanout.events import Event, InvalidEvent
from fanout.metrics import Metrics

log = logging.getLogger(__name__)

# Exit code of a worker that stopped because an event could not be processed. The event was not
# acknowledged, so the restarted worker (compose `restart: unless-stopped`, `fanout up`) retries it.
EXIT_UNPROCESSED = 75


class Message(Protocol):
    partition: int
    offset: int


class Record(Protocol):
    """What the runner needs of a consumed event (Faust's EventT has these)."""

    key: bytes | None
    value: bytes | None
    message: Message


Decode = Callable[[bytes | None, bytes | None], Event]  # (value, key) -> event, or InvalidEvent
Handle = Callable[[Event], Awaitable[None]]
HandleGroup = Callable[[Sequence[Event]], Awaitable[None]]  # one key's events of a batch, in order
SendDeadLetter = Callable[[bytes | None, bytes | None, list[tuple[str, bytes]]], Awaitable[None]]
Stop = Callable[[str], NoReturn]


def stop_unacknowledged(reason: str) -> NoReturn:
    """End the worker now, without acknowledging anything in flight."""
    log.critical("%s; stopping the worker unacknowledged (exit %d)", reason, EXIT_UNPROCESSED, exc_info=True)
    logging.shutdown()
    os._exit(EXIT_UNPROCESSED)


def dead_letter_headers(record: Record, error: InvalidEvent, source: str) -> list[tuple[str, bytes]]:
    """Why and where from: enough to find the original and to replay it."""
    return [
        ("reason", error.reason.encode()),
        ("error", error.detail.encode()[:1000]),
        ("source_topic", source.encode()),
        ("source_partition", str(record.message.partition).encode()),
        ("source_offset", str(record.message.offset).encode()),
    ]


class BatchRunner:
    def __init__(self, source: str, decode: Decode, handle: Handle, send_dead_letter: SendDeadLetter,
                 metrics: Metrics, stop: Stop = stop_unacknowledged, handle_group: HandleGroup | None = None) -> None:
        self.source = source
        self.decode = decode
        self.handle = handle
        # Given, it takes a key's whole run of events (still in order), so that the pipeline can write
        # consecutive events of one author together (fanout/pipeline.py `handle_group`).
        self.handle_group = handle_group
        self.send_dead_letter = send_dead_letter
        self.metrics = metrics
        self.stop = stop

    async def run(self, batch: Sequence[Record]) -> None:
        """Handle or dead-letter every record of the batch; returns only when all of it is done."""
        try:
            groups = await self._decode_grouped(batch)
            outcomes = await asyncio.gather(*(self._in_order(events) for events in groups), return_exceptions=True)
        except Exception:
            self.stop(f"could not finish a batch from {self.source}")
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        if failed:
            try:
                raise failed[0]
            except BaseException:  # re-raised so that `stop` logs it with its traceback
                self.stop(f"could not process an event from {self.source}")

    async def _decode_grouped(self, batch: Sequence[Record]) -> list[list[Event]]:
        by_key: dict[Any, list[Event]] = defaultdict(list)
        for record in batch:
            try:
                by_key[record.key].append(self.decode(record.value, record.key))
            except InvalidEvent as error:
                await self._dead_letter(record, error)
        return list(by_key.values())

    async def _in_order(self, events: list[Event]) -> None:
        if self.handle_group is not None:
            await self.handle_group(events)
            return
        for event in events:
            await self.handle(event)

    async def _dead_letter(self, record: Record, error: InvalidEvent) -> None:
        self.metrics.dead_lettered.labels(error.reason).inc()
        log.warning("dead-lettered an event from %s[%s]@%s: %s", self.source, record.message.partition,
                    record.message.offset, error)
        await self.send_dead_letter(record.key, record.value, dead_letter_headers(record, error, self.source))
