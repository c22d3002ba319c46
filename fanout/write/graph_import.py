"""`fanout import follows FILE`: a follow graph imported in bulk, through the follow handler itself.

A file of follows, one per line: CSV `follower_id,followee_id[,event_time]` (a header line is skipped) or,
for a name ending in .jsonl/.ndjson, JSON objects `{"follower_id", "followee_id", "event_time"?,
"following"?}` (`"following": false` is an unfollow). A line without an event time gets the import's start
time, so a pair listed twice is imported once.

Why through the handler: the import must end in exactly the state the worker would leave had the same
follows come through Kafka (edges, counts, tiers with their hysteresis, following rows, celebrity sets,
hidden rows, backfills), and the simplest way to be exact is to run the same code. It is fast for the
same reasons the worker is: every author's follows are one run (`Pipeline.handle_group`: one read of its
edges, one commit per segment), and the runs of many authors go concurrently, their writes coalesced
into full batches by the adapter.

Order: authors are independent (no row of one author's follow depends on another author's), so the lines
are regrouped by followee, keeping each author's lines in file order: the state is the one the worker
leaves for that order. Chunk tasks (promotions, demotions, purges) run inline after each window of authors.

Run it while no worker serves these authors (before their first start, or with the workers stopped): a
worker caches the stats of the authors it owns (fanout/adapters/author_cache.py).

The followers' side rows (following_by_user, one partition per follower) are the one thing written
differently: kept in memory (`ImportGraph`) and written at the end sorted by follower, so that a follower's
rows share batches and Cassandra applies them as one mutation per follower instead of one per row. Nothing
the import does reads them, and each carries its event time as write timestamp, so the state is the same.
An import that stopped half-way is run again: steps that are no longer fresh rewrite those rows too.
"""

from __future__ import annotations

import asyncio
import csv
import json
from array import array
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from fanout.adapters.author_cache import AuthorStatsCache
from fanout.core.events import ChunkTask, Event, Followed, Unfollowed
from fanout.core.ports import GraphStore
from fanout.write.pipeline import Pipeline

WINDOW = 20_000  # edges of the authors run concurrently at once (whole authors, at least one)
FLUSH_ROWS = 20_000  # followers' side rows written per call at the end (sorted by follower)


class BadLine(ValueError):
    """A line that is not a follow; the import stops before writing anything."""


@dataclass
class Follows:
    """Every line of a file, in columns (a million edges in ~25 MB)."""

    followers: array[int]
    followees: array[int]
    times: array[int]
    following: bytearray

    def __len__(self) -> int:
        return len(self.followers)

    def event(self, i: int) -> Event:
        kind = Followed if self.following[i] else Unfollowed
        return kind(event_time=self.times[i], follower_id=self.followers[i], followee_id=self.followees[i])


def read_follows(path: Path, default_time: int) -> Follows:
    """Parse and check every line; raises BadLine with the line number at the first bad one."""
    follows = Follows(array("q"), array("q"), array("q"), bytearray())
    for number, (follower, followee, event_time, following) in _lines(path):
        if follower <= 0 or followee <= 0 or follower == followee or (event_time is not None and event_time < 0):
            raise BadLine(f"{path}:{number}: not a follow between two different positive ids")
        follows.followers.append(follower)
        follows.followees.append(followee)
        follows.times.append(default_time if event_time is None else event_time)
        follows.following.append(following)
    return follows


def _lines(path: Path) -> Iterator[tuple[int, tuple[int, int, int | None, bool]]]:
    with path.open(newline="") as f:
        if path.suffix in (".jsonl", ".ndjson"):
            for number, line in enumerate(f, 1):
                if line.strip():
                    yield number, _json_line(path, number, line)
            return
        for number, row in enumerate(csv.reader(f), 1):
            if not row or (number == 1 and not row[0].strip().isdigit()):
                continue  # a blank line, or the header
            try:
                if len(row) not in (2, 3):
                    raise ValueError(f"{len(row)} columns")
                yield number, (int(row[0]), int(row[1]), int(row[2]) if len(row) == 3 else None, True)
            except ValueError as exc:
                raise BadLine(f"{path}:{number}: expected follower_id,followee_id[,event_time] ({exc})") from None


def _json_line(path: Path, number: int, line: str) -> tuple[int, int, int | None, bool]:
    try:
        doc = json.loads(line)
        values = (doc["follower_id"], doc["followee_id"], doc.get("event_time"), doc.get("following", True))
        if not all(type(v) is int for v in values[:2]) or type(values[3]) is not bool or (
                values[2] is not None and type(values[2]) is not int):
            raise ValueError("ids and event_time must be integers, following a boolean")
    except (ValueError, KeyError, TypeError) as exc:
        raise BadLine(f"{path}:{number}: {exc}") from None
    return values


def windows(follows: Follows, size: int = WINDOW, part: int = 0, parts: int = 1) -> Iterator[list[list[int]]]:
    """Line numbers grouped by followee (each author's in file order), whole authors per window; only
    the authors whose id is `part` modulo `parts`."""
    by_author: dict[int, list[int]] = defaultdict(list)
    for i, followee in enumerate(follows.followees):
        if followee % parts == part:
            by_author[followee].append(i)
    window: list[list[int]] = []
    edges = 0
    for lines in by_author.values():
        window.append(lines)
        edges += len(lines)
        if edges >= size:
            yield window
            window, edges = [], 0
    if window:
        yield window


class ImportGraph(AuthorStatsCache):
    """The importer's graph store: the author stats cache of a worker (the importer is the only writer of
    these authors' stats while it runs), and the followers' side rows kept until `flush`."""

    def __init__(self, graph: GraphStore) -> None:
        super().__init__(graph)
        self._clear()

    def _clear(self) -> None:
        self._users, self._followees, self._times = array("q"), array("q"), array("q")
        self._following = bytearray()

    async def set_following(self, user_id: int, followee_id: int, following: bool, event_time: int) -> None:
        await self.set_followings([(user_id, followee_id, following, event_time)])

    async def set_followings(self, changes: Iterable[tuple[int, int, bool, int]]) -> None:
        for user, followee, following, event_time in changes:
            self._users.append(user)
            self._followees.append(followee)
            self._times.append(event_time)
            self._following.append(following)

    async def flush(self, progress: Callable[[int], None] = lambda n: None) -> int:
        """Write the kept rows, each follower's together; returns how many."""
        order = sorted(range(len(self._users)), key=self._users.__getitem__)
        for start in range(0, len(order), FLUSH_ROWS):
            rows = order[start : start + FLUSH_ROWS]
            await self.graph.set_followings((self._users[i], self._followees[i], bool(self._following[i]),
                                             self._times[i]) for i in rows)
            progress(len(rows))
        self._clear()
        return len(order)


async def import_follows(follows: Follows, pipeline: Pipeline, tasks: list[ChunkTask],
                         progress: Callable[[int], None] = lambda n: None, window: int = WINDOW,
                         part: int = 0, parts: int = 1, graph: ImportGraph | None = None) -> int:
    """Every follow (of the authors of `part` of `parts`) through `pipeline` (its send_task appends to
    `tasks`), then, when `graph` is the pipeline's ImportGraph, the followers' side rows it kept; returns
    follows imported. `progress` counts each follow twice: once committed, once its followers' side row
    is written."""
    done = 0
    for authors in windows(follows, window, part, parts):
        await asyncio.gather(*(pipeline.handle_group([follows.event(i) for i in lines]) for lines in authors))
        while tasks:  # as the worker's chunk agent would: by key, keys concurrently
            by_key: dict[bytes, list[Event]] = defaultdict(list)
            for task in tasks:
                by_key[task.key].append(task)
            tasks.clear()
            await asyncio.gather(*(pipeline.handle_group(group) for group in by_key.values()))
        n = sum(map(len, authors))
        done += n
        progress(n if graph else 2 * n)
    if graph:
        await graph.flush(progress)
    return done
