"""The read side: a user's inbox merged with the timelines of the celebrities they follow.

`merge_newest_first` and the cursor functions are pure; `read_feed` runs them over the stores, and
`home_feed` decides what to merge for one reader: their inbox and every celebrity they follow, or, for a
returning inactive reader, the timelines of every account they follow while the worker rebuilds their
inbox. The read service hands these functions a post store backed by its caches, so a read costs about
one Cassandra request (see `home_feed`).
"""

from __future__ import annotations

import heapq
from collections.abc import Awaitable, Callable, Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from fanout.core.ids import MAX_ID
from fanout.core.model import Post, ReaderPage, ReaderSets, ReaderState, Strategy
from fanout.core.policy import is_returning
from fanout.core.ports import Stores
from fanout.settings import Settings

MAX_ROUNDS = 8  # extra rounds only happen when deleted posts fill a page


class InvalidCursor(ValueError):
    pass


CURSOR_PATTERN = r"^([1-9][0-9]{0,18})?$"  # the OpenAPI spec's; every value it admits is a valid cursor


def parse_cursor(cursor: str | None) -> int | None:
    """A cursor is the post id of the last item of the previous page (keyset: ids below it). A number
    above every id (up to 19 digits) means "from the newest", so each cursor the spec admits is valid."""
    if cursor is None or cursor == "":
        return None
    if not (cursor.isascii() and cursor.isdigit()) or len(cursor) > 19 or cursor[0] == "0":
        raise InvalidCursor(f"cursor must be a post id (a positive 64-bit integer), got {cursor[:40]!r}")
    return min(int(cursor), MAX_ID)


def merge_newest_first(sources: Iterable[Sequence[int]], limit: int) -> list[int]:
    """k-way merge of id lists each sorted newest first, without duplicates, at most `limit` ids."""
    if limit <= 0:
        return []
    merged = heapq.merge(*sources, reverse=True)
    out: list[int] = []
    for pid in merged:
        if out and out[-1] == pid:
            continue
        out.append(pid)
        if len(out) == limit:
            break
    return out


@dataclass(frozen=True)
class FeedPage:
    items: list[Post]
    next_cursor: int | None
    pulled: frozenset[int] = frozenset()  # ids of items that came from a timeline, not the inbox


async def read_feed(stores: Stores, user_id: int, limit: int, cursor: int | None, *, pull_authors: Sequence[int],
                    use_inbox: bool = True, hidden: AbstractSet[int] = frozenset(),
                    inbox_head: list[int] | None = None, floor: int = 0) -> FeedPage:
    """One page, newest first, below `cursor` and at or above `floor`: the user's inbox (if `use_inbox`) merged
    with the timelines of `pull_authors`; deleted posts and posts of `hidden` authors (unfollowed) left out.
    `inbox_head`, if given, is the inbox's first `limit + 1` ids below `cursor`, already read (with the
    reader's state). A page that reaches `floor` ends there, with no next cursor."""
    items: list[Post] = []
    from_inbox: set[int] = set()
    before = cursor
    for _ in range(MAX_ROUNDS):
        want = limit + 1 - len(items)  # one beyond the page tells whether there is a next page
        if not use_inbox:
            inbox: list[list[int]] = []
        elif inbox_head is not None:
            inbox, inbox_head = [inbox_head], None
        else:
            inbox = [await stores.inboxes.inbox_head(user_id, before, want)]
        read = [*inbox, *(await stores.posts.timeline_heads(pull_authors, before, want) if pull_authors else [])]
        # A source that came back short, or reached the floor, has nothing more for this page.
        ended = all(len(h) < want or (h and h[-1] < floor) for h in read)
        heads = [[pid for pid in h if pid >= floor] for h in read] if floor else read
        from_inbox.update(*heads[:len(inbox)])
        candidates = merge_newest_first(heads, want + 1)
        ids = candidates[:want]
        posts = await stores.posts.posts(ids)
        items.extend(p for p in (posts.get(pid) for pid in ids)
                     if p is not None and not p.deleted and p.author_id not in hidden)
        # Exhausted only if every source ended AND the merge cut nothing off: several short heads can still
        # hold more ids together than this round took.
        exhausted = ended and len(candidates) <= want
        if len(items) > limit or exhausted:
            break
        before = ids[-1]
    else:
        # Deleted posts filled every round: page what we have; the client continues below the last id seen.
        return FeedPage(items, before, _pulled(items, from_inbox))
    page = items[:limit]
    return FeedPage(page, page[-1].post_id if len(items) > limit else None, _pulled(page, from_inbox))


def _pulled(items: list[Post], from_inbox: set[int]) -> frozenset[int]:
    return frozenset(p.post_id for p in items if p.post_id not in from_inbox)


@dataclass(frozen=True)
class HomeFeed:
    page: FeedPage
    regenerating: bool  # answered by a read-time pull while the reader's inbox is rebuilt


SetsAt = Callable[[int, object | None], Awaitable[ReaderSets]]  # (user, version) -> the reader's sets
PageAt = Callable[[int, int | None, int], Awaitable[ReaderPage]]  # (user, before, limit) -> state and inbox head


async def home_feed(stores: Stores, settings: Settings, user_id: int, limit: int, before: int | None,
                    now_ms: int, sets: SetsAt | None = None, page_at: PageAt | None = None,
                    may_pull: Callable[[], bool] | None = None,
                    take_pull: Callable[[], None] | None = None) -> HomeFeed:
    """A reader's home feed page: their inbox merged with the celebrities they follow; or, for a returning
    reader (and in the pull-everything baseline), the timelines of every account they follow. Nothing is
    truncated: every celebrity followed (and every followee of a returning reader) is merged.

    Cost: one request for the reader's activity and sets version with their inbox head (two for a page
    below a cursor that holds no inbox row), one more for the reader's sets unless `sets` has them at that
    version, plus what the post store cannot answer from memory (fanout/read/read_cache.py). `page_at`, if
    given, answers the first of these in place of the reader store (fanout/read/reader_cache.py).

    A returning reader's pull costs a read per followee (up to FANOUT_MAX_FOLLOWING): `may_pull`, if given,
    is asked first (the read service's per-user limit), and when it says no the page is read as for an
    active reader (the inbox, rebuilt so far, and the celebrities), still marked regenerating.

    An inbox keeps its newest FANOUT_INBOX_CAP rows (fanout/write/trimming.py): a page that goes below its
    trim boundary is read, from there on, from the timelines of every account the reader follows. That pull
    costs as much as a returning reader's: `take_pull`, if given, is called first and raises to refuse it
    (the read service's per-user limit, a 429)."""
    first = await (page_at or stores.readers.reader_page)(user_id, before, limit + 1)
    if sets is not None:
        reader_sets = await sets(user_id, first.sets_version)
    else:
        reader_sets = await stores.readers.reader_sets(user_id)
    state = ReaderState(first.activity, reader_sets.celebrities, reader_sets.hidden)
    returning = is_returning(state.activity, now_ms, settings)
    floor = first.trimmed_below  # the inbox holds every row pushed at or above it
    if settings.strategy is Strategy.PULL or (returning and (may_pull is None or may_pull())):
        cap = settings.max_followees_read if settings.strategy is Strategy.PULL else 10**9
        page = await _followed_timelines(stores, user_id, limit, before, state.hidden, cap)
    elif floor and before is not None and before <= floor:
        if take_pull is not None:
            take_pull()
        page = await _followed_timelines(stores, user_id, limit, before, state.hidden)
    else:
        page = await read_feed(stores, user_id, limit, before, pull_authors=state.celebrities, hidden=state.hidden,
                               inbox_head=first.inbox, floor=floor)
        if floor and page.next_cursor is None:  # the inbox ended at its trim: older posts are below it
            if len(page.items) < limit:
                if take_pull is not None:
                    take_pull()
                deeper = await _followed_timelines(stores, user_id, limit - len(page.items), floor, state.hidden)
                page = FeedPage(page.items + deeper.items, deeper.next_cursor, page.pulled | deeper.pulled)
            else:
                page = FeedPage(page.items, page.items[-1].post_id, page.pulled)
    return HomeFeed(page, returning)


async def _followed_timelines(stores: Stores, user_id: int, limit: int, before: int | None,
                              hidden: AbstractSet[int], cap: int = 10**9) -> FeedPage:
    """A page from the timelines of (up to `cap` of) the accounts the reader follows, no inbox: a returning
    reader's, the pull strategy's, and any page below an inbox's trim boundary, where its rows may be gone."""
    followees = await stores.graph.following(user_id, cap)
    return await read_feed(stores, user_id, limit, before, pull_authors=followees, use_inbox=False, hidden=hidden)
