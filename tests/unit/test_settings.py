"""Settings: one typed object, read from FANOUT_* env, explicit arguments on top. No servers."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from fanout.settings import Settings, StackSettings


def test_defaults_without_env() -> None:
    s = Settings.load(env={})
    assert s == Settings()
    assert s.kafka_port == 9092
    assert s.kafka_bootstrap == "127.0.0.1:9092"


def test_env_values_are_parsed_to_the_field_type() -> None:
    s = Settings.load(env={
        "FANOUT_KAFKA_PORT": "1234",
        "FANOUT_RETRY_BASE_DELAY": "0.5",
        "FANOUT_STATE_DIR": "/tmp/somewhere",
        "FANOUT_KEYSPACE": "other",
    })
    assert s.kafka_port == 1234 and isinstance(s.kafka_port, int)
    assert s.retry_base_delay == 0.5 and isinstance(s.retry_base_delay, float)
    assert s.stack.state_dir == Path("/tmp/somewhere") and isinstance(s.stack.state_dir, Path)
    assert s.keyspace == "other"
    assert s.kafka_bootstrap == "127.0.0.1:1234"


def test_env_defaults_to_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FANOUT_CHUNK_SIZE", "77")
    assert Settings.load().chunk_size == 77


def test_unknown_fanout_names_are_ignored() -> None:
    assert Settings.load(env={"FANOUT_NO_SUCH_SETTING": "x"}) == Settings()


def test_explicit_overrides_win_over_env() -> None:
    s = Settings.load(env={"FANOUT_KAFKA_PORT": "1234", "FANOUT_KEYSPACE": "from_env"}, kafka_port=4321)
    assert s.kafka_port == 4321
    assert s.keyspace == "from_env"


@pytest.mark.parametrize(("name", "raw"), [("FANOUT_KAFKA_PORT", "ninety"), ("FANOUT_RETRY_BASE_DELAY", "soon")])
def test_bad_number_names_the_variable(name: str, raw: str) -> None:
    with pytest.raises(ValueError, match=name) as info:
        Settings.load(env={name: raw})
    assert repr(raw) in str(info.value)


def test_env_names_cover_every_field_with_docs() -> None:
    names = Settings.env_names()
    fields = [f.name for cls in (Settings, StackSettings) for f in dataclasses.fields(cls) if f.name != "stack"]
    assert sorted(names) == sorted(f"FANOUT_{f.upper()}" for f in fields)
    assert all(doc for doc in names.values()), [n for n, doc in names.items() if not doc]


def test_every_field_can_be_set_from_its_env_name() -> None:
    # Round trip: the default of each field, written as env text, parses back to the same value.
    assert Settings.load(env=Settings().to_env()) == Settings()


def test_launcher_settings_are_their_own_object_in_the_same_namespace() -> None:
    s = Settings.load(env={"FANOUT_CASSANDRA_HEAP": "2G", "FANOUT_KAFKA_PORT": "1234"}, kafka_heap="256m")
    assert s.stack.cassandra_heap == "2G" and s.stack.kafka_heap == "256m" and s.kafka_port == 1234
    assert not hasattr(s, "cassandra_heap")  # the processes never see the launcher's knobs
    assert {"FANOUT_CASSANDRA_HEAP", "FANOUT_KAFKA_PORT"} <= set(Settings.env_names())
    assert "FANOUT_STACK" not in Settings.env_names()



def test_an_unknown_strategy_is_refused_naming_the_variable() -> None:
    with pytest.raises(ValueError, match="FANOUT_STRATEGY"):
        Settings.load(env={"FANOUT_STRATEGY": "broadcast"})


def test_isolated_settings_share_nothing_named_with_the_original() -> None:
    base = Settings.load(env={})
    run = base.isolated("bench-push-1", strategy="push")
    names = ("keyspace", "events_topic", "chunks_topic", "dead_letter_topic", "updates_topic", "app_id")
    assert all(getattr(run, n) != getattr(base, n) for n in names)
    assert run.keyspace == "bench_push_1"  # a valid CQL identifier
    assert run.strategy == "push" and run.kafka_port == base.kafka_port


def test_a_yes_or_no_setting_reads_true_false_1_0_and_names_the_variable_otherwise() -> None:
    assert Settings.load(env={"FANOUT_STACK_AUTH": "false"}).stack.stack_auth is False
    assert Settings.load(env={"FANOUT_STACK_AUTH": "1"}).stack.stack_auth is True
    with pytest.raises(ValueError, match="FANOUT_STACK_AUTH"):
        Settings.load(env={"FANOUT_STACK_AUTH": "maybe"})
