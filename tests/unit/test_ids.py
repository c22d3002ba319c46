"""Time-sortable post ids (fanout/core/ids.py): order, layout and range, with an injected clock."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fanout.core.ids import (
    EPOCH_MS,
    MAX_ID,
    MAX_NODE,
    MAX_SEQUENCE,
    SEQUENCE_BITS,
    PostIdGenerator,
    millis_of,
    smallest_id_at,
)

NOW_MS = 1_700_000_000_000
LAST_MS = EPOCH_MS + (1 << 41) - 1  # the last millisecond the 41 time bits can hold (year 2089)


def clock_of(readings: Iterable[int]) -> Callable[[], int]:
    """A clock returning the given readings, then repeating the last one forever."""
    it = iter(readings)
    last = [NOW_MS]

    def clock() -> int:
        last[0] = next(it, last[0])
        return last[0]

    return clock


def node_of(post_id: int) -> int:
    return (post_id >> SEQUENCE_BITS) & MAX_NODE


def sequence_of(post_id: int) -> int:
    return post_id & MAX_SEQUENCE


def assert_strictly_increasing(ids: list[int]) -> None:
    assert all(a < b for a, b in zip(ids, ids[1:], strict=False))


def test_ids_strictly_increase_with_the_real_clock() -> None:
    gen = PostIdGenerator(node=5)
    assert_strictly_increasing([gen.next_id() for _ in range(20_000)])


def test_more_than_4096_ids_in_one_ms_borrow_the_next_ms() -> None:
    gen = PostIdGenerator(node=1, clock_ms=lambda: NOW_MS)  # a clock that stands still
    ids = [gen.next_id() for _ in range(3 * (MAX_SEQUENCE + 1) + 10)]
    assert_strictly_increasing(ids)
    assert [millis_of(i) for i in ids[: MAX_SEQUENCE + 1]] == [NOW_MS] * (MAX_SEQUENCE + 1)
    assert millis_of(ids[MAX_SEQUENCE + 1]) == NOW_MS + 1
    assert sequence_of(ids[MAX_SEQUENCE + 1]) == 0
    assert millis_of(ids[-1]) == NOW_MS + 3


def test_a_clock_going_backwards_never_makes_an_id_go_back() -> None:
    gen = PostIdGenerator(clock_ms=clock_of([NOW_MS, NOW_MS - 1, NOW_MS - 60_000, NOW_MS, NOW_MS + 1, NOW_MS - 5]))
    ids = [gen.next_id() for _ in range(8)]
    assert_strictly_increasing(ids)
    assert [millis_of(i) for i in ids] == [NOW_MS] * 4 + [NOW_MS + 1] * 4


@given(st.lists(st.integers(NOW_MS - 10, NOW_MS + 10), min_size=1, max_size=300), st.integers(0, MAX_NODE))
def test_ids_strictly_increase_for_any_clock(readings: list[int], node: int) -> None:
    gen = PostIdGenerator(node=node, clock_ms=clock_of(readings))
    ids = [gen.next_id() for _ in readings]
    assert_strictly_increasing(ids)
    assert {node_of(i) for i in ids} == {node}


@given(st.integers(EPOCH_MS, LAST_MS - 1))
def test_millis_of_returns_the_clock_reading(unix_ms: int) -> None:
    post_id = PostIdGenerator(node=MAX_NODE, clock_ms=lambda: unix_ms).next_id()
    assert millis_of(post_id) == unix_ms
    assert smallest_id_at(unix_ms) <= post_id < smallest_id_at(unix_ms + 1)
    assert millis_of(smallest_id_at(unix_ms)) == unix_ms


@pytest.mark.parametrize("node", [0, 1, 2, 512, MAX_NODE])
def test_node_bits_hold_the_node(node: int) -> None:
    gen = PostIdGenerator(node=node, clock_ms=lambda: NOW_MS)
    ids = [gen.next_id() for _ in range(MAX_SEQUENCE + 3)]  # including a borrowed millisecond
    assert {node_of(i) for i in ids} == {node}


def test_nodes_generate_distinct_ids_in_the_same_ms() -> None:
    gens = [PostIdGenerator(node=n, clock_ms=lambda: NOW_MS) for n in (0, 1, MAX_NODE)]
    ids = [g.next_id() for g in gens for _ in range(100)]
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("unix_ms", [EPOCH_MS, NOW_MS, LAST_MS])
def test_ids_fit_a_positive_signed_64_bit_integer(unix_ms: int) -> None:
    gen = PostIdGenerator(node=MAX_NODE, clock_ms=lambda: unix_ms)
    ids = [gen.next_id() for _ in range(MAX_SEQUENCE + 1)]  # up to the largest sequence in the ms
    assert all(0 <= i <= MAX_ID for i in ids)
    assert ids[-1] < 2**63
    assert MAX_ID == 2**63 - 1


def test_smallest_id_before_the_epoch_is_zero() -> None:
    assert smallest_id_at(EPOCH_MS - 1000) == 0
    assert smallest_id_at(EPOCH_MS) == 0


@pytest.mark.parametrize("node", [-1, MAX_NODE + 1, 10**6])
def test_node_outside_10_bits_is_rejected(node: int) -> None:
    with pytest.raises(ValueError):
        PostIdGenerator(node=node)


def test_ids_are_unique_across_threads() -> None:
    gen = PostIdGenerator(node=3, clock_ms=lambda: NOW_MS)  # a still clock forces sequence sharing
    results: list[list[int]] = [[] for _ in range(8)]

    def work(out: list[int]) -> None:
        out.extend(gen.next_id() for _ in range(2_000))

    threads = [threading.Thread(target=work, args=(out,)) for out in results]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every_id = [i for out in results for i in out]
    assert len(set(every_id)) == len(every_id)
    for out in results:
        assert_strictly_increasing(out)
