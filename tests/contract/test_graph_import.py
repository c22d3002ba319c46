"""`fanout import follows` ends in exactly the state the follow handler leaves: the same follows (and the posts
published before them) go one event at a time through `Pipeline.handle` into one store and through the bulk
import into another, on the in-memory adapter and on real Cassandra, and every table is compared row by row."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from memory_state import memory_state

from fanout.adapters.cassandra import Cassandra, cassandra_stores, connect, migrate
from fanout.adapters.memory import MemoryStorage
from fanout.core.events import ChunkTask, Event, Followed, PostCreated, Unfollowed, UserSeen
from fanout.core.ids import PostIdGenerator, millis_of
from fanout.core.ports import Stores
from fanout.metrics import Metrics
from fanout.settings import Settings
from fanout.write.graph_import import BadLine, ImportGraph, import_follows, read_follows
from fanout.write.pipeline import Pipeline, no_updates

SETTINGS = Settings.load(env={}, celebrity_threshold=4, celebrity_demote_ratio=0.5, follow_backfill=3, chunk_size=2,
                         strategy="hybrid")
DAY_MS = 86_400_000
TABLES = ("posts", "author_timeline", "inbox", "followers_by_author", "following_by_user")
_post_ids = PostIdGenerator(node=1003)
Dump = Callable[[], Any]


@pytest.fixture(params=[pytest.param("memory"), pytest.param("cassandra", marks=pytest.mark.e2e)])
def two_stores(request: pytest.FixtureRequest) -> Iterator[tuple[tuple[Stores, Dump], tuple[Stores, Dump]]]:
    """Two empty stores of one adapter, and how to dump each one's every live row."""
    if request.param == "memory":
        a, b = MemoryStorage(SETTINGS), MemoryStorage(SETTINGS)
        yield (a.stores(), lambda: memory_state(a)), (b.stores(), lambda: memory_state(b))
        return
    stack: Settings = request.getfixturevalue("stack")
    pairs, cleanup = [], []
    for _ in range(2):
        s = Settings.load(**{**_fields(stack), **_fields(SETTINGS, "celebrity_threshold", "celebrity_demote_ratio",
                                                           "follow_backfill", "chunk_size")})
        s = s.isolated(f"import_{uuid.uuid4().hex[:8]}")
        migrate(s)
        cluster, session = connect(s, s.keyspace)
        cleanup.append((cluster, session, s.keyspace))

        def dump(session: Any = session) -> dict[str, set[tuple[Any, ...]]]:
            # Sets as frozensets; sets_version is random per change, so two runs agree on all but it.
            return {t: {tuple((k, frozenset(v) if isinstance(v, set | frozenset) or hasattr(v, "isdisjoint") else v)
                              for k, v in r._asdict().items() if k != "sets_version")
                        for r in session.execute(f"SELECT * FROM {t}")} for t in TABLES}

        pairs.append((cassandra_stores(Cassandra(session, s, Metrics()), s), dump))
    try:
        yield pairs[0], pairs[1]
    finally:
        for cluster, session, keyspace in cleanup:
            session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)
            cluster.shutdown()


def _fields(s: Settings, *names: str) -> dict[str, Any]:
    import dataclasses

    return {f.name: getattr(s, f.name) for f in dataclasses.fields(s) if f.name != "stack" and (
        not names or f.name in names)}


def pipeline_on(stores: Stores, inline: bool) -> tuple[Pipeline, list[ChunkTask]]:
    tasks: list[ChunkTask] = []

    async def send_task(task: ChunkTask) -> None:
        if inline:
            await pipeline.handle(task)  # at once, as a worker with an idle chunks agent would
        else:
            tasks.append(task)

    pipeline = Pipeline(stores, SETTINGS, Metrics(), send_task, no_updates)
    return pipeline, tasks


def scene(base: int, now: int) -> tuple[list[Event], list[dict[str, Any]]]:
    """Posts and readers first (as events), then the follow lines: authors crossing the threshold up and
    back down (hysteresis), unfollows, stale and repeated lines, lines without an event time."""
    authors = [base + i for i in range(3)]
    fans = [base + 100 + i for i in range(6)]
    setup: list[Event] = [UserSeen(event_time=now - 10 * DAY_MS, user_id=fans[5])]  # inactive: no pushes later
    for author in authors[:2]:
        for _ in range(4):
            pid = _post_ids.next_id()
            setup.append(PostCreated(event_time=millis_of(pid), post_id=pid, author_id=author, body=f"by {author}"))
    t = now - 3_600_000
    lines: list[dict[str, Any]] = []
    for i, fan in enumerate(fans):  # authors[0]: promoted at the 4th follower
        lines.append({"follower_id": fan, "followee_id": authors[0], "event_time": t + i})
    for i, fan in enumerate(fans[:4]):  # ... and demoted below 2 (6 -> 1 follower)
        lines.append({"follower_id": fan, "followee_id": authors[0], "event_time": t + 100 + i, "following": False})
    lines.append({"follower_id": fans[5], "followee_id": authors[0], "event_time": t + 104, "following": False})
    lines.append({"follower_id": fans[0], "followee_id": authors[0], "event_time": t + 1})  # stale follow
    for fan in fans[:3]:  # authors[1]: a normal author, followed twice by the same lines (no event time)
        lines += [{"follower_id": fan, "followee_id": authors[1]}] * 2
    lines.append({"follower_id": fans[3], "followee_id": authors[1], "event_time": t + 200, "following": False})
    lines += [{"follower_id": fan, "followee_id": authors[2], "event_time": t + 300 + i} for i, fan in enumerate(fans)]
    return setup, lines


def as_events(lines: list[dict[str, Any]], default_time: int) -> list[Event]:
    return [(Followed if line.get("following", True) else Unfollowed)(
        event_time=line.get("event_time", default_time), follower_id=line["follower_id"],
        followee_id=line["followee_id"]) for line in lines]


@pytest.mark.parametrize("form", ["jsonl", "csv"])
async def test_the_import_leaves_every_table_as_the_follow_handler_does(
        two_stores: tuple[tuple[Stores, Dump], tuple[Stores, Dump]], tmp_path: Path, form: str) -> None:
    (handled, dump_handled), (imported, dump_imported) = two_stores
    now = millis_of(_post_ids.next_id())
    setup, lines = scene(7_700_000_000 + int(uuid.uuid4().int % 10**6) * 1000, now)
    if form == "csv":  # CSV holds follows only
        lines = [line for line in lines if line.get("following", True)]
    for stores in (handled, imported):
        pipeline, _ = pipeline_on(stores, inline=True)
        for e in setup:
            await pipeline.handle(e)
    reference, _ = pipeline_on(handled, inline=True)
    for e in as_events(lines, default_time=now):
        await reference.handle(e)

    path = tmp_path / f"follows.{form}"
    if form == "jsonl":
        path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    else:
        path.write_text("follower_id,followee_id,event_time\n" + "".join(
            f"{line['follower_id']},{line['followee_id']}" + (f",{line['event_time']}\n" if "event_time" in line
                                                                 else "\n") for line in lines))
    graph = ImportGraph(imported.graph)
    bulk, tasks = pipeline_on(dataclasses.replace(imported, graph=graph), inline=False)
    steps: list[int] = []
    assert await import_follows(read_follows(path, now), bulk, tasks, steps.append, window=5,
                                graph=graph) == len(lines)
    assert sum(steps) == 2 * len(lines)  # each follow committed, then its followers' side row written
    state = dump_handled()
    assert any(state.values())
    assert dump_imported() == state


@pytest.mark.parametrize(("text", "suffix"), [("1,1\n", "csv"), ("1,x\n", "csv"), ("1,2,3,4\n", "csv"),
                                              ('{"follower_id": 1}\n', "jsonl"),
                                              ('{"follower_id": 1, "followee_id": 2.0}\n', "jsonl")])
def test_a_bad_line_stops_the_import_with_its_number(tmp_path: Path, text: str, suffix: str) -> None:
    path = tmp_path / f"f.{suffix}"
    path.write_text("3,4\n" + text if suffix == "csv" else '{"follower_id": 3, "followee_id": 4}\n' + text)
    with pytest.raises(BadLine, match=":2:"):
        read_follows(path, 0)


def test_the_parts_of_a_split_import_cover_every_line_once_each_author_in_one_part(tmp_path: Path) -> None:
    from fanout.write.graph_import import windows

    path = tmp_path / "f.csv"
    path.write_text("".join(f"{f},{a}\n" for a in range(1, 8) for f in range(10, 10 + a)))
    follows = read_follows(path, 0)
    parts = [[line for authors in windows(follows, 4, part, 3) for lines in authors for line in lines]
             for part in range(3)]
    assert sorted(line for part in parts for line in part) == list(range(len(follows)))
    for n, part in enumerate(parts):
        assert {follows.followees[line] % 3 for line in part} <= {n}
        assert part == sorted(part, key=lambda line: (follows.followees[line], line))  # file order per author
