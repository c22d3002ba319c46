"""The dead-letter topic as an operator sees it: what is there and why, and replaying it.

Two kinds of events land there (fanout/write/runner.py): malformed ones (reason = the decoder's, e.g.
`bad_json`) and parked ones (reason `handler_error`: the handler kept failing). Each carries its source
topic, partition and offset in headers. A dead letter's id is its offset on the dead-letter topic
(`partition:offset` if the topic was given more than one partition). Replay re-publishes the original
key and value to the source topic with a `replayed_from` header; handlers are idempotent, so replaying
twice, or replaying an event that had in fact been processed, changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from fanout.settings import Settings
from fanout.write.producer import producer_config


@dataclass(frozen=True)
class DeadLetter:
    id: str
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]

    @property
    def reason(self) -> str:
        return self.headers.get("reason", "")

    @property
    def source(self) -> str:
        """topic[partition]@offset of the original event."""
        h = self.headers
        return f"{h.get('source_topic', '?')}[{h.get('source_partition', '?')}]@{h.get('source_offset', '?')}"

    @property
    def error(self) -> str:
        cls = self.headers.get("error_class")
        return f"{cls}: {self.headers.get('error', '')}" if cls else self.headers.get("error", "")

    def preview(self, width: int = 60) -> str:
        text = (self.value or b"").decode(errors="replace")
        return text if len(text) <= width else text[: width - 1] + "…"


def read_dead_letters(settings: Settings, timeout: float = 10.0) -> list[DeadLetter]:
    """Every event on the dead-letter topic, oldest first (read up to the high watermark, no group)."""
    topic = settings.dead_letter_topic
    # An operator's tool: as the Kafka admin (only the worker writes dead letters; nobody else reads them).
    consumer = Consumer({**settings.kafka_config("admin"), "group.id": "fanout-dead-letters",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        meta = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        if meta is None or meta.error is not None:
            return []
        ends = {}
        for p in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
            if high > low:
                ends[p] = (low, high)
        consumer.assign([TopicPartition(topic, p, low) for p, (low, _) in ends.items()])
        several = len(meta.partitions) > 1
        letters: list[DeadLetter] = []
        remaining = {p: high for p, (_, high) in ends.items()}
        while remaining:
            msg = consumer.poll(timeout)
            if msg is None:
                raise TimeoutError(f"reading {topic}: no message within {timeout:.0f}s")
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                raise RuntimeError(f"reading {topic}: {error}")
            letters.append(_letter(msg, several))
            if (msg.offset() or 0) + 1 >= remaining.get(msg.partition() or 0, 0):
                remaining.pop(msg.partition() or 0, None)
        return letters
    finally:
        consumer.close()


def _letter(msg: Message, several_partitions: bool) -> DeadLetter:
    offset, partition = msg.offset(), msg.partition()
    raw = msg.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else [pair for pair in raw if isinstance(pair, tuple)]
    headers = {str(k): _text(v) for k, v in pairs}
    return DeadLetter(id=f"{partition}:{offset}" if several_partitions else str(offset),
                      timestamp_ms=msg.timestamp()[1], key=_bytes(msg.key()), value=_bytes(msg.value()),
                      headers=headers)


def _text(value: str | bytes | None) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value or ""


def _bytes(value: str | bytes | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value


def select(letters: Iterable[DeadLetter], reason: str | None = None, ids: Sequence[str] = ()) -> list[DeadLetter]:
    """The dead letters with this reason and, if ids are given, one of these ids."""
    return [d for d in letters if (reason is None or d.reason == reason) and (not ids or d.id in ids)]


def replay(settings: Settings, letters: Sequence[DeadLetter], timeout: float = 60.0) -> int:
    """Re-publish each dead letter to its source topic (key and value as they were); returns how many
    Kafka acknowledged. Raises if any was not acknowledged. As the Kafka admin: a source topic may be the
    chunk topic, which the services' user may not write."""
    producer = Producer(producer_config(settings, principal="admin"))
    errors: list[str] = []

    def delivered(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            errors.append(err.str())

    for letter in letters:
        topic = letter.headers.get("source_topic")
        if not topic:
            raise ValueError(f"dead letter {letter.id} has no source_topic header; cannot replay it")
        producer.produce(topic, key=letter.key, value=letter.value, on_delivery=delivered,
                         headers=[("replayed_from", f"{settings.dead_letter_topic}:{letter.id}".encode())])
    left = producer.flush(timeout)
    if left or errors:
        raise RuntimeError(f"{left} dead letters not acknowledged after {timeout:.0f}s; errors: {errors[:3]}")
    return len(letters)
