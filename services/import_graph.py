"""`fanout import follows FILE`: the bulk graph import (fanout/graph_import.py) as a process, with a progress bar."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from fanout.adapters.author_cache import AuthorStatsCache
from fanout.bootstrap import open_resources
from fanout.clock import wall_ms
from fanout.events import ChunkTask
from fanout.graph_import import import_follows, read_follows
from fanout.pipeline import Pipeline
from fanout.settings import Settings


def run(settings: Settings, path: Path, event_time: int = 0, console: Console | None = None) -> dict[str, float]:
    """Import the follows of `path`; returns how many and how long it took (reading excluded)."""
    console = console or Console(stderr=True)
    with console.status(f"reading {path}"):
        follows = read_follows(path, event_time or wall_ms())
    res = open_resources(settings, storage=True)
    try:
        # The importer is the only writer of these authors' stats while it runs, as a worker is of its own.
        stores = dataclasses.replace(res.stores, graph=AuthorStatsCache(res.stores.graph))
        tasks: list[ChunkTask] = []

        async def send_task(task: ChunkTask) -> None:
            tasks.append(task)  # run inline by import_follows, after each window

        pipeline = Pipeline(stores, settings, res.metrics, send_task)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                   TextColumn("{task.fields[rate]:,.0f} follows/s"), TimeElapsedColumn())
        started = time.perf_counter()
        with Progress(*columns, console=console) as bar:
            task = bar.add_task(f"importing into {settings.keyspace}", total=len(follows), rate=0.0)

            def advance(n: int) -> None:
                done = bar.tasks[0].completed + n
                bar.update(task, advance=n, rate=done / max(time.perf_counter() - started, 1e-6))

            imported = asyncio.run(import_follows(follows, pipeline, tasks, advance))
        seconds = time.perf_counter() - started
    finally:
        res.close()
    return {"follows": imported, "seconds": round(seconds, 2), "follows_per_s": round(imported / seconds)}
