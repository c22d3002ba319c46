"""Dead letters as the operator sees them (fanout/write/dead_letters.py): no servers."""

from __future__ import annotations

from fanout.write.dead_letters import DeadLetter, select


def letter(id_: str, reason: str, **headers: str) -> DeadLetter:
    return DeadLetter(id_, 1_790_000_000_000, b"7", b'{"type": "PostCreated", "body": "' + b"x" * 100 + b'"}',
                      {"reason": reason, **headers})


def test_a_parked_event_names_its_source_and_error() -> None:
    d = letter("3", "handler_error", source_topic="t", source_partition="2", source_offset="41",
               error_class="KeyError", error="'missing'")
    assert d.source == "t[2]@41"
    assert d.error == "KeyError: 'missing'"
    assert len(d.preview(40)) == 40 and d.preview(40).endswith("…")


def test_select_filters_by_reason_and_ids() -> None:
    letters = [letter("0", "bad_json"), letter("1", "handler_error"), letter("2", "handler_error")]
    assert [d.id for d in select(letters, "handler_error")] == ["1", "2"]
    assert [d.id for d in select(letters, ids=["0", "2"])] == ["0", "2"]
    assert [d.id for d in select(letters, "handler_error", ["0", "2"])] == ["2"]
    assert select(letters) == letters
