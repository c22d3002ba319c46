"""Event models and their codec (fanout/core/events.py), and the schema files they mirror."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import fastjsonschema
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fanout.core.codec import (
    EVENT_TYPES,
    SCHEMA_DIR,
    SCHEMA_VERSION,
    check_event,
    decode,
    decode_author_event,
    decode_chunk_task,
    decode_feed_read,
    decode_feed_updates,
    decode_notification_event,
    encode,
    encode_feed_updates,
)
from fanout.core.events import (
    CelebrityChunk,
    CelebritySetChanged,
    ChunkTask,
    DemotionChunk,
    Event,
    FeedUpdate,
    FeedUpdates,
    FollowChanged,
    Followed,
    InboxChunk,
    InboxPurge,
    InvalidEvent,
    Liked,
    Mentioned,
    NotificationChanged,
    PostCreated,
    PostDeleted,
    PostDelivered,
    PostRemoved,
    PostStored,
    Replied,
    SeenChunk,
    Unfollowed,
    Unliked,
    Unmentioned,
    UserSeen,
)
from fanout.core.ids import MAX_ID, MAX_USER_ID, smallest_id_at

T = 1_700_000_000_000
MAX_BYTES = 64 * 1024
EXAMPLES: list[Event] = [
    PostCreated(event_time=T, post_id=123, author_id=7, body="hello, world ✓"),
    PostDeleted(event_time=T, post_id=123, author_id=7),
    Followed(event_time=T, follower_id=3, followee_id=7),
    Unfollowed(event_time=T, follower_id=3, followee_id=7),
    InboxChunk(event_time=T, post_id=123, author_id=7, follower_ids=(1, 2, 3), chunk=0, chunks=2, followers=5),
    CelebrityChunk(event_time=T, author_id=7, follower_ids=(4, 5), author_version=T * 1000),
    DemotionChunk(event_time=T, author_id=7, follower_ids=(4, 5), author_version=T * 1000, until_post_id=123),
    UserSeen(event_time=T, user_id=7),  # keyed by the reader; 7 like the other author-topic examples
    InboxPurge(event_time=T, user_id=3, author_id=7, as_of_us=T * 1000),
    SeenChunk(event_time=T, user_id=3, author_ids=(7, 8), seen=T, rebuild=True, chunk=0, chunks=2, follows=2),
    PostStored(event_time=T, post_id=123, author_id=7, tier="pull", body="hi"),
    PostRemoved(event_time=T, post_id=123, author_id=7),
    PostDelivered(event_time=T, post_id=123, author_id=7, user_ids=(1, 2)),
    FollowChanged(event_time=T, follower_id=3, followee_id=7, following=False),
    CelebritySetChanged(event_time=T, author_id=7, user_ids=(4, 5), celebrity=True),
    NotificationChanged(event_time=T, owner=7, group_id=99, kind="like", target=123, actors=5, latest=(3, 4),
                        first_at=T - 5, updated_at=T),
    FeedUpdates(event_time=T + 1, updates=(PostStored(event_time=T, post_id=123, author_id=7, tier="push", body="hi"),
                                           FollowChanged(event_time=T + 1, follower_id=3, followee_id=7,
                                                         following=True))),
    Liked(event_time=T, user_id=3, post_id=123, author_id=7),
    Unliked(event_time=T, user_id=3, post_id=123, author_id=7),
    Replied(event_time=T, user_id=3, post_id=124, parent_id=123, author_id=7),
    Mentioned(event_time=T, user_id=7, post_id=123, mentioned_ids=(3, 4)),
    Unmentioned(event_time=T, user_id=7, post_id=123, mentioned_ids=(3, 4)),
]
NOTICES = [e for e in EXAMPLES if isinstance(e, Liked | Unliked | Replied | Mentioned | Unmentioned)]
CHUNK_TASKS = [e for e in EXAMPLES if isinstance(e, ChunkTask)]
FEED_UPDATES = [e for e in EXAMPLES if isinstance(e, FeedUpdate)]
ENVELOPES = [e for e in EXAMPLES if isinstance(e, FeedUpdates)]
FEED_READS = [e for e in EXAMPLES if isinstance(e, UserSeen)]
AUTHOR_EVENTS = [e for e in EXAMPLES
                 if e not in CHUNK_TASKS and e not in FEED_UPDATES and e not in ENVELOPES and e not in FEED_READS
                 and e not in NOTICES]
ID_FIELDS = ("post_id", "author_id", "follower_id", "followee_id")


def ids(events: list[Event]) -> list[str]:
    return [e.TYPE for e in events]


def doc_of(event: Event) -> dict[str, Any]:
    return dict(orjson.loads(encode(event)))


def reason(raw: bytes | None, max_bytes: int | None = MAX_BYTES) -> str:
    with pytest.raises(InvalidEvent) as info:
        decode(raw, max_bytes)
    return info.value.reason


# --- round trips -----------------------------------------------------------------------------------


def test_every_event_type_has_an_example() -> None:
    assert sorted(ids(EXAMPLES)) == sorted(EVENT_TYPES)


@pytest.mark.parametrize("event", EXAMPLES, ids=ids(EXAMPLES))
def test_encode_then_decode_is_identity(event: Event) -> None:
    decoded = decode(encode(event), MAX_BYTES)
    assert decoded == event
    assert type(decoded) is type(event)


@pytest.mark.parametrize("event", EXAMPLES, ids=ids(EXAMPLES))
def test_encoded_event_carries_type_and_version(event: Event) -> None:
    doc = doc_of(event)
    assert doc["type"] == event.TYPE
    assert doc["version"] == SCHEMA_VERSION


positive_ids = st.integers(1, MAX_ID)
event_times = st.integers(0, 253_402_300_799_999)
bodies = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=5000)
follower_lists = st.lists(positive_ids, min_size=1, max_size=50).map(tuple)
any_event = st.one_of(
    st.builds(PostCreated, event_time=event_times, post_id=positive_ids, author_id=positive_ids, body=bodies),
    st.builds(PostDeleted, event_time=event_times, post_id=positive_ids, author_id=positive_ids),
    st.builds(Followed, event_time=event_times, follower_id=positive_ids, followee_id=positive_ids),
    st.builds(Unfollowed, event_time=event_times, follower_id=positive_ids, followee_id=positive_ids),
    st.builds(InboxChunk, event_time=event_times, post_id=positive_ids, author_id=positive_ids,
              follower_ids=follower_lists, chunk=st.integers(0, 10**6), chunks=st.integers(1, 10**6),
              followers=st.integers(0, 2**31 - 1)),
    st.builds(CelebrityChunk, event_time=event_times, author_id=positive_ids, follower_ids=follower_lists,
              author_version=positive_ids),
    st.builds(DemotionChunk, event_time=event_times, author_id=positive_ids, follower_ids=follower_lists,
              author_version=positive_ids, until_post_id=positive_ids),
    st.builds(UserSeen, event_time=event_times, user_id=positive_ids),
    st.builds(InboxPurge, event_time=event_times, user_id=positive_ids, author_id=positive_ids,
              as_of_us=positive_ids),
    st.builds(SeenChunk, event_time=event_times, user_id=positive_ids, author_ids=follower_lists,
              seen=event_times, rebuild=st.booleans(), chunk=st.integers(0, 10), chunks=st.integers(11, 20),
              follows=st.integers(0, 10**9)),
)


@given(any_event)
def test_any_valid_event_round_trips(event: Event) -> None:
    assert decode(encode(event)) == event


# --- rejections ------------------------------------------------------------------------------------


def test_none_is_empty() -> None:
    assert reason(None) == "empty"


@pytest.mark.parametrize("raw", [b"", b"{", b"{not json}", b"\xff\xfe", b"{'type': 'PostCreated'}", b"[1,]"])
def test_malformed_json_is_bad_json(raw: bytes) -> None:
    assert reason(raw) == "bad_json"


@pytest.mark.parametrize("raw", [b"[]", b"[1, 2]", b"42", b'"PostCreated"', b"null", b"true"])
def test_json_that_is_not_an_object_is_schema(raw: bytes) -> None:
    assert reason(raw) == "schema"


@pytest.mark.parametrize("type_value", ["PostEdited", "postcreated", "", 5, None, ["PostCreated"]])
def test_unknown_or_non_string_type_is_unknown_type(type_value: Any) -> None:
    doc = doc_of(EXAMPLES[0]) | {"type": type_value}
    assert reason(orjson.dumps(doc)) == "unknown_type"


def test_missing_type_is_unknown_type() -> None:
    doc = doc_of(EXAMPLES[0])
    del doc["type"]
    assert reason(orjson.dumps(doc)) == "unknown_type"


def test_larger_than_max_bytes_is_oversized() -> None:
    raw = encode(EXAMPLES[0])
    assert decode(raw, len(raw)) == EXAMPLES[0]
    assert reason(raw, len(raw) - 1) == "oversized"
    assert reason(b"x" * (MAX_BYTES + 1)) == "oversized"  # checked before parsing


@pytest.mark.parametrize(
    ("event", "field"),
    [(e, f) for e in EXAMPLES for f in ["version", *(f.name for f in dataclasses.fields(e))]],
    ids=lambda v: v if isinstance(v, str) else v.TYPE,
)
def test_missing_field_is_schema(event: Event, field: str) -> None:
    doc = doc_of(event)
    del doc[field]
    assert reason(orjson.dumps(doc)) == "schema"


@pytest.mark.parametrize("event", EXAMPLES, ids=ids(EXAMPLES))
def test_extra_field_is_schema(event: Event) -> None:
    assert reason(orjson.dumps(doc_of(event) | {"extra": 1})) == "schema"


@pytest.mark.parametrize(
    ("event", "field", "value"),
    [
        (EXAMPLES[0], "post_id", "123"),
        (EXAMPLES[0], "post_id", 1.5),
        (EXAMPLES[0], "post_id", True),
        (EXAMPLES[0], "post_id", None),
        (EXAMPLES[0], "body", 5),
        (EXAMPLES[0], "body", ["hello"]),
        (EXAMPLES[0], "event_time", "2024-01-01"),
        (EXAMPLES[0], "version", 2),
        (EXAMPLES[0], "version", "1"),
        (EXAMPLES[2], "follower_id", "3"),
        (EXAMPLES[4], "follower_ids", "1,2,3"),
        (EXAMPLES[4], "follower_ids", [1, "2"]),
        (EXAMPLES[4], "chunk", -1),
        (EXAMPLES[4], "chunks", 0),
        (EXAMPLES[5], "follower_ids", {"1": 1}),
    ],
    ids=lambda v: v.TYPE if isinstance(v, Event) else repr(v),
)
def test_wrong_type_or_value_is_schema(event: Event, field: str, value: Any) -> None:
    assert reason(orjson.dumps(doc_of(event) | {field: value})) == "schema"


ID_CASES = [(e, f) for e in EXAMPLES for f in ID_FIELDS if f in doc_of(e)]


@pytest.mark.parametrize("bad_id", [0, -1, -(2**63), MAX_ID + 1])
@pytest.mark.parametrize(("event", "field"), ID_CASES, ids=lambda v: v if isinstance(v, str) else v.TYPE)
def test_id_outside_1_to_max_id_is_schema(event: Event, field: str, bad_id: int) -> None:
    assert reason(orjson.dumps(doc_of(event) | {field: bad_id})) == "schema"


@pytest.mark.parametrize("bad_id", [0, -1])
@pytest.mark.parametrize("event", CHUNK_TASKS, ids=ids(CHUNK_TASKS))
def test_follower_id_in_a_chunk_outside_range_is_schema(event: Event, bad_id: int) -> None:
    assert reason(orjson.dumps(doc_of(event) | {"follower_ids": [1, bad_id]})) == "schema"


@pytest.mark.parametrize("event", CHUNK_TASKS, ids=ids(CHUNK_TASKS))
def test_chunk_without_followers_or_with_too_many_is_schema(event: Event) -> None:
    assert reason(orjson.dumps(doc_of(event) | {"follower_ids": []})) == "schema"
    assert reason(orjson.dumps(doc_of(event) | {"follower_ids": list(range(1, 10_002))}), None) == "schema"


@pytest.mark.parametrize(("body", "expected"), [("", "schema"), ("x" * 5001, "schema")])
def test_empty_or_too_long_body_is_schema(body: str, expected: str) -> None:
    assert reason(orjson.dumps(doc_of(EXAMPLES[0]) | {"body": body})) == expected


def test_body_at_max_length_is_accepted() -> None:
    event = dataclasses.replace(EXAMPLES[0], body="x" * 5000)
    assert decode(encode(event), MAX_BYTES) == event


@pytest.mark.parametrize(
    ("event", "field", "value"),
    [(EXAMPLES[0], "post_id", 123.0), (EXAMPLES[0], "author_id", 7.0), (EXAMPLES[2], "event_time", float(T)),
     (EXAMPLES[4], "follower_ids", [1.0, 2])],
    ids=["post_id", "author_id", "event_time", "follower_ids"],
)
def test_integral_float_in_an_integer_field_is_schema(event: Event, field: str, value: Any) -> None:
    assert reason(orjson.dumps(doc_of(event) | {field: value})) == "schema"


# --- topic-specific decoders and keys --------------------------------------------------------------


@pytest.mark.parametrize("event", AUTHOR_EVENTS, ids=ids(AUTHOR_EVENTS))
def test_author_event_under_its_key_is_accepted(event: Event) -> None:
    assert decode_author_event(encode(event), event.key, MAX_BYTES) == event


@pytest.mark.parametrize("key", [b"8", b"07", b"7 ", b"3", b"", None])
@pytest.mark.parametrize("event", AUTHOR_EVENTS, ids=ids(AUTHOR_EVENTS))
def test_author_event_under_another_key_is_wrong_key(event: Event, key: bytes | None) -> None:
    with pytest.raises(InvalidEvent) as info:
        decode_author_event(encode(event), key, MAX_BYTES)
    assert info.value.reason == "wrong_key"


@pytest.mark.parametrize("event", CHUNK_TASKS + FEED_READS, ids=ids(CHUNK_TASKS + FEED_READS))
def test_chunk_task_or_feed_read_on_the_author_topic_is_unknown_type(event: Event) -> None:
    """Feed reads have a topic of their own, which the ingest API's Kafka user cannot write, and the read
    service's user cannot write this one: neither can pass for the other."""
    with pytest.raises(InvalidEvent) as info:
        decode_author_event(encode(event), event.key, MAX_BYTES)
    assert info.value.reason == "unknown_type"


def test_a_feed_read_under_its_reader_key_is_accepted_on_its_topic() -> None:
    event = UserSeen(event_time=5, user_id=7)
    assert decode_feed_read(encode(event), b"7", MAX_BYTES) == event
    with pytest.raises(InvalidEvent) as info:
        decode_feed_read(encode(event), b"8", MAX_BYTES)
    assert info.value.reason == "wrong_key"


@pytest.mark.parametrize("event", AUTHOR_EVENTS + CHUNK_TASKS, ids=ids(AUTHOR_EVENTS + CHUNK_TASKS))
def test_anything_but_a_feed_read_on_its_topic_is_unknown_type(event: Event) -> None:
    with pytest.raises(InvalidEvent) as info:
        decode_feed_read(encode(event), event.key, MAX_BYTES)
    assert info.value.reason == "unknown_type"


@pytest.mark.parametrize("event", CHUNK_TASKS, ids=ids(CHUNK_TASKS))
def test_chunk_task_is_accepted_on_the_chunks_topic(event: Event) -> None:
    assert decode_chunk_task(encode(event)) == event


@pytest.mark.parametrize("event", AUTHOR_EVENTS, ids=ids(AUTHOR_EVENTS))
def test_author_event_on_the_chunks_topic_is_unknown_type(event: Event) -> None:
    with pytest.raises(InvalidEvent) as info:
        decode_chunk_task(encode(event))
    assert info.value.reason == "unknown_type"


def test_topic_decoders_pass_on_decode_reasons() -> None:
    cases = [(lambda raw: decode_author_event(raw, b"7", 10), [(None, "empty"), (b"x" * 11, "oversized"),
                                                                 (b"{", "bad_json")]),
             (decode_chunk_task, [(None, "empty"), (b"{", "bad_json")])]
    for call, expected_reasons in cases:
        for raw, expected in expected_reasons:
            with pytest.raises(InvalidEvent) as info:
                call(raw)
            assert info.value.reason == expected


def test_chunk_tasks_are_not_held_to_the_size_limit_of_outside_input() -> None:
    # The worker writes them itself: a chunk of 10,000 long ids is far above FANOUT_MAX_EVENT_BYTES.
    task = InboxChunk(event_time=T, post_id=123, author_id=7, follower_ids=tuple(range(MAX_ID - 10_000, MAX_ID)),
                      chunk=0, chunks=1, followers=10_000)
    assert len(encode(task)) > MAX_BYTES
    assert decode_chunk_task(encode(task)) == task


@pytest.mark.parametrize(
    ("event", "key"),
    [
        (PostCreated(T, 123, 7, "x"), b"7"),
        (PostDeleted(T, 123, 7), b"7"),
        (Followed(T, follower_id=3, followee_id=7), b"7"),  # follow events live with the followee
        (Unfollowed(T, follower_id=3, followee_id=7), b"7"),
        (PostCreated(T, 1, MAX_ID, "x"), str(MAX_ID).encode("ascii")),
    ],
    ids=["PostCreated", "PostDeleted", "Followed", "Unfollowed", "max_id"],
)
def test_author_events_are_keyed_by_author_in_decimal_ascii(event: Event, key: bytes) -> None:
    assert event.key == key


# --- schema files ----------------------------------------------------------------------------------

SCHEMA_FILES = sorted(SCHEMA_DIR.glob("*.json"))


def test_every_event_type_has_exactly_one_schema_file() -> None:
    assert sorted(p.name for p in SCHEMA_FILES) == sorted(f"{t}.v{SCHEMA_VERSION}.json" for t in EVENT_TYPES)


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.name)
def test_schema_file_is_draft_07_and_compiles(path: Path) -> None:
    schema = orjson.loads(path.read_bytes())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    fastjsonschema.compile(schema)


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.name)
def test_schema_fields_match_the_dataclass(path: Path) -> None:
    schema = orjson.loads(path.read_bytes())
    cls = EVENT_TYPES[schema["title"]]
    fields = {"type", "version", *(f.name for f in dataclasses.fields(cls))}
    assert set(schema["required"]) == fields
    assert set(schema["properties"]) == fields
    assert schema["additionalProperties"] is False
    assert schema["properties"]["type"] == {"const": cls.TYPE}
    assert schema["properties"]["version"] == {"const": SCHEMA_VERSION}


@pytest.mark.parametrize("event", FEED_UPDATES + ENVELOPES, ids=ids(FEED_UPDATES + ENVELOPES))
def test_feed_updates_belong_on_the_updates_topic_only(event: Event) -> None:
    expected = event.updates if isinstance(event, FeedUpdates) else (event,)
    assert decode_feed_updates(encode(event)) == expected
    with pytest.raises(InvalidEvent):
        decode_chunk_task(encode(event))
    with pytest.raises(InvalidEvent):
        decode_author_event(encode(event), event.key, MAX_BYTES)


def test_an_author_event_is_not_a_feed_update() -> None:
    with pytest.raises(InvalidEvent, match="feed updates"):
        decode_feed_updates(encode(EXAMPLES[0]))


@given(st.lists(st.sampled_from(FEED_UPDATES), min_size=1, max_size=20), event_times)
def test_a_spliced_envelope_decodes_to_its_updates_in_order(updates: list[FeedUpdate], newest: int) -> None:
    raw = encode_feed_updates([encode(u) for u in updates], newest)
    assert decode(raw) == FeedUpdates(event_time=newest, updates=tuple(updates))


@pytest.mark.parametrize("inner", [EXAMPLES[0], CHUNK_TASKS[0], ENVELOPES[0]], ids=lambda e: e.TYPE)
def test_an_envelope_holds_feed_updates_only(inner: Event) -> None:
    raw = encode_feed_updates([encode(FEED_UPDATES[0]), encode(inner)], T)
    with pytest.raises(InvalidEvent, match="feed updates only"):
        decode_feed_updates(raw)


def test_an_invalid_update_invalidates_its_envelope() -> None:
    bad = orjson.dumps({**doc_of(FEED_UPDATES[0]), "post_id": 1.5})
    assert reason(encode_feed_updates([encode(FEED_UPDATES[1]), bad], T)) == "schema"
    assert reason(encode_feed_updates([], T)) == "schema"  # an envelope is never empty


def test_a_stored_post_has_a_known_tier() -> None:
    doc = {**doc_of(FEED_UPDATES[0]), "tier": "sideways"}
    assert reason(orjson.dumps(doc)) == "schema"


# --- what the worker refuses beyond the schema (check_event) ---------------------------------------------

NOW = 1_800_000_000_000


@pytest.mark.parametrize(("event", "reason"), [
    (Followed(event_time=NOW + 300_001, follower_id=1, followee_id=2), "future_event_time"),
    (PostCreated(event_time=NOW, post_id=smallest_id_at(NOW + 86_400_000), author_id=1, body="x"), "future_event_time"),
    (Followed(event_time=NOW, follower_id=MAX_USER_ID + 1, followee_id=2), "id_range"),
    (UserSeen(event_time=NOW, user_id=2**63 - 1), "id_range"),
    (PostDeleted(event_time=NOW, post_id=5, author_id=MAX_USER_ID + 1), "id_range"),
], ids=["future follow", "future post id", "follower id", "reader id", "author id"])
def test_the_worker_refuses_future_times_and_ids_beyond_the_apis(event: Event, reason: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        check_event(event, NOW, max_future_ms=300_000)
    assert info.value.reason == reason


def test_the_worker_takes_past_times_and_the_largest_user_id() -> None:
    for event in (Followed(event_time=NOW - 10 * 86_400_000, follower_id=MAX_USER_ID, followee_id=2),
                  Followed(event_time=NOW + 300_000, follower_id=1, followee_id=2),
                  PostCreated(event_time=NOW, post_id=smallest_id_at(NOW), author_id=MAX_USER_ID, body="x")):
        assert check_event(event, NOW, max_future_ms=300_000) is event


@pytest.mark.parametrize("event", NOTICES + [e for e in AUTHOR_EVENTS if isinstance(e, Followed | Unfollowed)],
                         ids=ids(NOTICES) + ["Followed", "Unfollowed"])
def test_likes_replies_mentions_and_follows_are_accepted_on_the_notifications_topic_under_their_key(
        event: Event) -> None:
    assert decode_notification_event(encode(event), event.key, MAX_BYTES) == event
    with pytest.raises(InvalidEvent) as info:
        decode_notification_event(encode(event), b"999", MAX_BYTES)
    assert info.value.reason == "wrong_key"


@pytest.mark.parametrize("event", NOTICES, ids=ids(NOTICES))
def test_a_like_reply_or_mention_on_the_author_topic_is_unknown_type(event: Event) -> None:
    with pytest.raises(InvalidEvent) as info:
        decode_author_event(encode(event), event.key, MAX_BYTES)
    assert info.value.reason == "unknown_type"


def test_a_post_on_the_notifications_topic_is_unknown_type_and_a_reply_is_keyed_by_its_parent() -> None:
    post = PostCreated(event_time=T, post_id=123, author_id=7, body="hi")
    with pytest.raises(InvalidEvent) as info:
        decode_notification_event(encode(post), post.key, MAX_BYTES)
    assert info.value.reason == "unknown_type"
    assert Replied(event_time=T, user_id=3, post_id=124, parent_id=123, author_id=7).key == b"123"
