"""Runs of follow changes (Pipeline.handle_group -> GraphHandlers.follows_changed) leave the state that the
same events handled one at a time leave, on the in-memory adapter: every table, cell by cell."""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict

from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from memory_state import memory_state

from fanout.adapters.memory import MemoryStorage
from fanout.core.events import ChunkTask, Event, Followed, PostCreated, Unfollowed
from fanout.core.ids import PostIdGenerator, millis_of
from fanout.metrics import Metrics
from fanout.settings import Settings
from fanout.write.pipeline import Pipeline, no_updates

SETTINGS = Settings.load(env={}, celebrity_threshold=3, celebrity_demote_ratio=0.5, follow_backfill=2, chunk_size=2,
                         strategy="hybrid")
AUTHORS = (1, 2)
FOLLOWERS = (11, 12, 13, 14)
START = 1_790_000_000_000
_post_ids = PostIdGenerator(node=7)


@st.composite
def histories(draw: st.DrawFn) -> list[Event]:
    """Follows, unfollows (some stale, some repeated) and posts of two authors, in arrival order."""
    events: list[Event] = []
    for _ in range(draw(st.integers(1, 30))):
        author = draw(st.sampled_from(AUTHORS))
        if draw(st.integers(0, 5)) == 0:
            pid = _post_ids.next_id()
            events.append(PostCreated(event_time=millis_of(pid), post_id=pid, author_id=author, body="x"))
            continue
        kind = draw(st.sampled_from([Followed, Followed, Unfollowed]))
        t = START + draw(st.integers(0, 40))
        events.append(kind(event_time=t, follower_id=draw(st.sampled_from(FOLLOWERS)), followee_id=author))
    return events


def pipeline(storage: MemoryStorage) -> Pipeline:
    async def send_task(task: ChunkTask) -> None:
        tasks.append(task)

    tasks: list[ChunkTask] = []
    p = Pipeline(storage.stores(), SETTINGS, Metrics(), send_task, no_updates)
    p.tasks = tasks  # type: ignore[attr-defined]
    return p


async def drain(p: Pipeline) -> None:
    while p.tasks:  # type: ignore[attr-defined]
        await p.handle(p.tasks.pop(0))  # type: ignore[attr-defined]


async def one_at_a_time(events: list[Event]) -> MemoryStorage:
    storage = MemoryStorage(SETTINGS)
    p = pipeline(storage)
    for e in events:
        await p.handle(e)
    await drain(p)  # chunk tasks wait on their topic meanwhile, as they do for the runner's batches
    return storage


async def as_the_runner_does(events: list[Event]) -> MemoryStorage:
    """Grouped by key, groups concurrently, each group in order and in runs (fanout/write/runner.py)."""
    storage = MemoryStorage(SETTINGS)
    p = pipeline(storage)
    groups: dict[bytes, list[Event]] = defaultdict(list)
    for e in events:
        groups[e.key].append(e)
    await asyncio.gather(*(p.handle_group(g) for g in groups.values()))
    await drain(p)
    return storage


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories())
def test_runs_leave_the_state_of_one_event_at_a_time(events: list[Event]) -> None:
    reference = asyncio.run(one_at_a_time(events))
    batched = asyncio.run(as_the_runner_does(events))
    assert memory_state(batched) == memory_state(reference)


def test_a_run_reads_the_edges_once_and_commits_once() -> None:
    storage = MemoryStorage(SETTINGS)
    calls: dict[str, int] = defaultdict(int)
    for name in ("edges", "set_edge", "set_edges", "author_stats"):
        method = getattr(storage, name)

        def counted(*args: object, _m: object = method, _n: str = name) -> object:
            calls[_n] += 1
            return _m(*args)  # type: ignore[operator]

        setattr(storage, name, counted)
    events = [Followed(event_time=START + i, follower_id=100 + i, followee_id=1) for i in range(2)]
    asyncio.run(pipeline(storage).handle_group(events))
    assert dict(calls) == {"author_stats": 1, "edges": 1, "set_edges": 1}
    assert list(itertools.chain(storage.followers.rows(1))) != []
