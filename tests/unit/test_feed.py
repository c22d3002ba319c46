"""The read side (fanout/read/feed.py): cursors, the k-way merge, and `read_feed` over an in-memory source."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Iterable, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fanout.core.ids import MAX_ID
from fanout.core.model import Post
from fanout.core.ports import Stores
from fanout.read.feed import (
    CURSOR_PATTERN,
    MAX_ROUNDS,
    FeedPage,
    InvalidCursor,
    merge_newest_first,
    parse_cursor,
    read_feed,
)

USER = 1

# --- cursors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(None, None), ("", None), ("1", 1), ("42", 42), (str(MAX_ID), MAX_ID), (str(MAX_ID + 1), MAX_ID),
     ("9" * 19, MAX_ID)],  # above every id: from the newest
)
def test_parse_cursor_accepts_positive_64_bit_ids(raw: str | None, expected: int | None) -> None:
    assert parse_cursor(raw) == expected


@pytest.mark.parametrize(
    "raw",
    ["abc", "-5", "0", "00", "07", "1.5", "+5", " 5", "5 ", "1e3", "0x10", str(2**64)],
)
def test_parse_cursor_rejects_what_is_not_a_positive_64_bit_id(raw: str) -> None:
    with pytest.raises(InvalidCursor):
        parse_cursor(raw)
    assert re.fullmatch(CURSOR_PATTERN, raw) is None  # the OpenAPI pattern rejects it too


@given(st.from_regex(CURSOR_PATTERN, fullmatch=True))
def test_every_cursor_the_spec_admits_parses(raw: str) -> None:
    parsed = parse_cursor(raw)
    assert parsed is None if raw == "" else 1 <= parsed <= MAX_ID


@pytest.mark.parametrize("raw", ["²", "١٢", "1" * 5000])
def test_parse_cursor_rejects_non_ascii_digits_and_huge_strings_with_invalid_cursor(raw: str) -> None:
    with pytest.raises(InvalidCursor):
        parse_cursor(raw)


# --- merge -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sources", "limit", "expected"),
    [
        ([[9, 5, 1], [8, 4], [7, 6, 3, 2]], 100, [9, 8, 7, 6, 5, 4, 3, 2, 1]),
        ([[9, 5, 1], [8, 4], [7, 6, 3, 2]], 4, [9, 8, 7, 6]),
        ([[9, 5, 1], [9, 5], [5, 1]], 100, [9, 5, 1]),  # an id in several sources appears once
        ([[9, 5, 1], [9, 5], [5, 1]], 2, [9, 5]),  # duplicates do not use up the limit
        ([[], [3, 2], []], 10, [3, 2]),
        ([[], []], 10, []),
        ([], 10, []),
        ([[3, 2, 1]], 1, [3]),
    ],
)
def test_merge_is_newest_first_without_duplicates_within_limit(
    sources: list[list[int]], limit: int, expected: list[int]
) -> None:
    assert merge_newest_first(sources, limit) == expected


@given(sources=st.lists(st.sets(st.integers(1, 60)), max_size=6), limit=st.integers(1, 80))
def test_merge_equals_sorting_the_union(sources: list[set[int]], limit: int) -> None:
    heads = [sorted(s, reverse=True) for s in sources]
    assert merge_newest_first(heads, limit) == sorted(set().union(*sources), reverse=True)[:limit]


def test_merge_with_limit_zero_returns_nothing() -> None:
    assert merge_newest_first([[3, 2, 1]], 0) == []


# --- read_feed over an in-memory source ------------------------------------------------------------


class MemoryFeedSource:
    """What read_feed needs of the post and inbox stores, over dicts; counts its calls (per method and
    per round)."""

    def __init__(self, inbox: set[int], timelines: dict[int, set[int]], deleted: Iterable[int] = ()) -> None:
        deleted = set(deleted)
        self.inbox = sorted(inbox, reverse=True)
        self.timelines = {c: sorted(ids, reverse=True) for c, ids in timelines.items()}
        every_id = set(inbox).union(*timelines.values())
        self.posts_by_id = {pid: Post(pid, 999, f"post {pid}", pid in deleted) for pid in every_id}
        self.calls: Counter[str] = Counter()

    async def inbox_head(self, user_id: int, before: int | None, limit: int) -> list[int]:
        self.calls["inbox_head"] += 1
        return _head(self.inbox, before, limit)

    async def timeline_head(self, author_id: int, before: int | None, limit: int) -> list[int]:
        self.calls["timeline_head"] += 1
        return _head(self.timelines.get(author_id, []), before, limit)

    async def timeline_heads(self, author_ids: Sequence[int], before: int | None, limit: int) -> list[list[int]]:
        return [await self.timeline_head(a, before, limit) for a in author_ids]

    async def posts(self, post_ids: Sequence[int]) -> dict[int, Post]:
        self.calls["posts"] += 1
        return {pid: self.posts_by_id[pid] for pid in post_ids if pid in self.posts_by_id}

    @property
    def stores(self) -> Stores:
        return Stores(posts=self, graph=None, readers=None, inboxes=self, notifications=None)  # type: ignore[arg-type]

    def live_ids_newest_first(self) -> list[int]:
        return sorted((p.post_id for p in self.posts_by_id.values() if not p.deleted), reverse=True)


def _head(ids_newest_first: list[int], before: int | None, limit: int) -> list[int]:
    return [pid for pid in ids_newest_first if before is None or pid < before][:limit]


async def read_pages(source: MemoryFeedSource, limit: int) -> list[tuple[FeedPage, Counter[str]]]:
    """Every page, following next_cursor until None, with the calls each page read made."""
    pages: list[tuple[FeedPage, Counter[str]]] = []
    cursor: int | None = None
    for _ in range(len(source.posts_by_id) + 2):  # enough for any correct reader; guards against a loop
        before_calls = source.calls.copy()
        page = await read_feed(source.stores, USER, limit, cursor, pull_authors=list(source.timelines))
        pages.append((page, source.calls - before_calls))
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor
    raise AssertionError(f"no last page after {len(pages)} pages")


@st.composite
def feeds(draw: st.DrawFn) -> tuple[MemoryFeedSource, int]:
    ids = st.integers(1, 120)
    inbox = draw(st.sets(ids, max_size=40))
    timelines = draw(st.lists(st.sets(ids, max_size=20), max_size=5))  # may overlap the inbox and each other
    every_id = sorted(inbox.union(*timelines))
    deleted = draw(st.sets(st.sampled_from(every_id))) if every_id else set()
    limit = draw(st.integers(1, 10))
    return MemoryFeedSource(inbox, {1000 + i: t for i, t in enumerate(timelines)}, deleted), limit


@settings(max_examples=300, deadline=None)
@given(feeds())
def test_paging_yields_every_live_post_once_newest_first(feed: tuple[MemoryFeedSource, int]) -> None:
    source, limit = feed
    pages = asyncio.run(read_pages(source, limit))

    seen = [post.post_id for page, _ in pages for post in page.items]
    assert seen == source.live_ids_newest_first()  # nothing missing, nothing twice, in order
    for page, calls in pages[:-1]:
        # A short page before the end is only allowed when deleted posts filled every round (documented).
        assert len(page.items) == limit or calls["inbox_head"] == MAX_ROUNDS
        assert page.next_cursor is not None
        assert page.items == [] or page.next_cursor <= page.items[-1].post_id
    assert len(pages[-1][0].items) <= limit


@settings(max_examples=100, deadline=None)
@given(feeds())
def test_one_read_costs_one_head_per_source_per_round(feed: tuple[MemoryFeedSource, int]) -> None:
    source, limit = feed
    celebrities = len(source.timelines)
    for _, calls in asyncio.run(read_pages(source, limit)):
        rounds = calls["inbox_head"]
        assert 1 <= rounds <= MAX_ROUNDS
        assert calls["timeline_head"] == rounds * celebrities
        assert calls["posts"] == rounds


@settings(max_examples=100, deadline=None)
@given(feeds())
def test_a_read_without_deleted_posts_takes_one_round(feed: tuple[MemoryFeedSource, int]) -> None:
    source, limit = feed
    for post in list(source.posts_by_id.values()):
        source.posts_by_id[post.post_id] = Post(post.post_id, post.author_id, post.body, False)
    for _, calls in asyncio.run(read_pages(source, limit)):
        assert calls["inbox_head"] == 1
        assert calls["timeline_head"] == len(source.timelines)


@pytest.mark.parametrize("deleted", [20, 18, 16, 14, 12, 10, 8])
async def test_short_heads_that_together_overflow_the_page_still_give_a_next_page(deleted: int) -> None:
    # Regression: 7 inbox ids (one deleted) + a 2-id celebrity timeline, limit 7. Both heads come back
    # short, yet together they hold 9 candidates for 8 slots: the page must not be taken as the last.
    inbox = {20, 18, 16, 14, 12, 10, 8}
    source = MemoryFeedSource(inbox, {500: {19, 2}}, deleted={deleted})
    expected = sorted((inbox - {deleted}) | {19, 2}, reverse=True)

    first = await read_feed(source.stores, USER, 7, None, pull_authors=list(source.timelines))
    assert [p.post_id for p in first.items] == expected[:7]
    assert first.next_cursor == expected[6]

    second = await read_feed(source.stores, USER, 7, first.next_cursor, pull_authors=list(source.timelines))
    assert [p.post_id for p in second.items] == expected[7:] == [2]
    assert second.next_cursor is None


async def test_page_of_deleted_posts_only_returns_a_cursor_to_continue_below() -> None:
    # limit 1 reads 2 ids per round: 2 * MAX_ROUNDS deleted posts exhaust the rounds before a live one.
    dead = set(range(100, 100 - 2 * MAX_ROUNDS, -1))
    source = MemoryFeedSource(dead | {3, 2}, {}, deleted=dead)

    page = await read_feed(source.stores, USER, 1, None, pull_authors=list(source.timelines))
    assert page.items == []
    assert page.next_cursor == min(dead)
    assert source.calls["inbox_head"] == MAX_ROUNDS

    rest = await read_feed(source.stores, USER, 1, page.next_cursor, pull_authors=list(source.timelines))
    assert [p.post_id for p in rest.items] == [3]


async def test_posts_of_hidden_authors_are_left_out_and_paging_goes_on() -> None:
    # An unfollowed author's posts may still sit in the inbox until the purge: hidden at read at once.
    source = MemoryFeedSource({9, 8, 7, 6, 5}, {})
    for pid in (8, 6):
        source.posts_by_id[pid] = Post(pid, 42, "unfollowed", False)
    first = await read_feed(source.stores, USER, 2, None, pull_authors=[], hidden={42})
    rest = await read_feed(source.stores, USER, 2, first.next_cursor, pull_authors=[], hidden={42})
    assert [p.post_id for p in first.items + rest.items] == [9, 7, 5]


async def test_pull_mode_reads_no_inbox() -> None:
    # A returning user's first read: the followees' timelines only, while the inbox is rebuilt.
    source = MemoryFeedSource({100}, {1: {5, 3}, 2: {4}})
    page = await read_feed(source.stores, USER, 10, None, pull_authors=[1, 2], use_inbox=False)
    assert [p.post_id for p in page.items] == [5, 4, 3]
    assert source.calls["inbox_head"] == 0


async def test_posts_missing_from_the_store_are_skipped() -> None:
    source = MemoryFeedSource({5, 4, 3}, {})
    del source.posts_by_id[4]
    page = await read_feed(source.stores, USER, 10, None, pull_authors=list(source.timelines))
    assert [p.post_id for p in page.items] == [5, 3]
    assert page.next_cursor is None
