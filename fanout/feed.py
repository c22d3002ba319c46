"""The read side: a user's inbox merged with the timelines of the celebrities they follow.

`merge_newest_first` and the cursor functions are pure; `read_feed` runs them over the stores, and
`home_feed` decides what to merge for one reader. One read costs O(limit + celebrities followed)
requests: the reader's state, the inbox head, one timeline head per followed celebrity (bounded by a
setting), and the posts of the page. A returning inactive user's read pulls the timelines of the
accounts they follow instead (bounded by FANOUT_REGEN_LIMIT) while the worker rebuilds their inbox.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from fanout.ids import MAX_ID
from fanout.model import Post, Strategy
from fanout.policy import is_returning
from fanout.ports import Stores
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


async def read_feed(stores: Stores, user_id: int, limit: int, cursor: int | None, *, pull_authors: Sequence[int],
                    use_inbox: bool = True, hidden: AbstractSet[int] = frozenset()) -> FeedPage:
    """One page, newest first, below `cursor`: the user's inbox (if `use_inbox`) merged with the timelines
    of `pull_authors`; deleted posts and posts of `hidden` authors (unfollowed) left out."""
    items: list[Post] = []
    before = cursor
    for _ in range(MAX_ROUNDS):
        want = limit + 1 - len(items)  # one beyond the page tells whether there is a next page
        heads = await asyncio.gather(
            *([stores.inboxes.inbox_head(user_id, before, want)] if use_inbox else []),
            *(stores.posts.timeline_head(a, before, want) for a in pull_authors),
        )
        candidates = merge_newest_first(heads, want + 1)
        ids = candidates[:want]
        posts = await stores.posts.posts(ids)
        items.extend(p for p in (posts.get(pid) for pid in ids)
                     if p is not None and not p.deleted and p.author_id not in hidden)
        # Exhausted only if every source came back short AND the merge cut nothing off: several short
        # heads can still hold more ids together than this round took.
        exhausted = all(len(h) < want for h in heads) and len(candidates) <= want
        if len(items) > limit or exhausted:
            break
        before = ids[-1]
    else:
        # Deleted posts filled every round: page what we have; the client continues below the last id seen.
        return FeedPage(items, before)
    page = items[:limit]
    return FeedPage(page, page[-1].post_id if len(items) > limit else None)


@dataclass(frozen=True)
class HomeFeed:
    page: FeedPage
    regenerating: bool  # answered by a read-time pull while the reader's inbox is rebuilt


async def home_feed(stores: Stores, settings: Settings, user_id: int, limit: int, before: int | None,
                    now_ms: int) -> HomeFeed:
    """A reader's home feed page: their inbox merged with the celebrities they follow; or, for a returning
    reader (and in the pull-everything baseline), the timelines of every account they follow."""
    state = await stores.readers.reader_state(user_id, settings.max_celebrities_read)
    returning = is_returning(state.activity, now_ms, settings)
    if settings.strategy is Strategy.PULL or returning:
        cap = settings.max_followees_read if settings.strategy is Strategy.PULL else settings.regen_limit
        followees = await stores.graph.following(user_id, cap)
        page = await read_feed(stores, user_id, limit, before, pull_authors=followees, use_inbox=False,
                               hidden=state.hidden)
    else:
        page = await read_feed(stores, user_id, limit, before, pull_authors=state.celebrities, hidden=state.hidden)
    return HomeFeed(page, returning)
