"""`fanout import follows FILE`: the bulk graph import (fanout/write/graph_import.py) as a process, with a progress bar.

With `jobs` > 1 the authors are split over that many processes (by followee id): authors are independent,
each one is still imported by one process in file order, so the state is the same; one Python process is
CPU-bound well before Cassandra is.
"""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from fanout.bootstrap import open_resources
from fanout.core.clock import wall_ms
from fanout.core.events import ChunkTask
from fanout.settings import Settings
from fanout.write.graph_import import ImportGraph, import_follows, read_follows
from fanout.write.pipeline import Pipeline, no_updates


def run(settings: Settings, path: Path, event_time: int = 0, console: Console | None = None,
        jobs: int = 1) -> dict[str, float]:
    """Import the follows of `path`; returns how many and how long it took (reading included)."""
    console = console or Console(stderr=True)
    default_time = event_time or wall_ms()
    with console.status(f"reading {path}"):
        total = len(read_follows(path, default_time))  # every line checked before anything is written
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
               TextColumn("{task.fields[rate]:,.0f} follows/s"), TimeElapsedColumn())
    started = time.perf_counter()
    with Progress(*columns, console=console) as bar:
        # Each follow counts twice: once committed, once its followers' side row is written (at the end).
        task = bar.add_task(f"importing into {settings.keyspace} (2 steps a follow)", total=2 * total, rate=0.0)

        def advance(n: int) -> None:
            done = bar.tasks[0].completed + n
            bar.update(task, advance=n, rate=done / 2 / max(time.perf_counter() - started, 1e-6))

        if jobs <= 1:
            imported = import_part(settings, path, default_time, 0, 1, advance)
        else:
            imported = _in_processes(settings, path, default_time, jobs, advance)
    seconds = time.perf_counter() - started
    return {"follows": imported, "seconds": round(seconds, 2), "follows_per_s": round(imported / seconds)}


def import_part(settings: Settings, path: Path, default_time: int, part: int, parts: int,
                progress: Any = None) -> int:
    """The follows of the authors whose id is `part` modulo `parts`, on a connection of this process."""
    follows = read_follows(path, default_time)
    res = open_resources(dataclasses.replace(settings, inbox_batch_size=settings.import_batch_rows), storage=True)
    try:
        graph = ImportGraph(res.stores.graph)
        stores = dataclasses.replace(res.stores, graph=graph)
        tasks: list[ChunkTask] = []

        async def send_task(task: ChunkTask) -> None:
            tasks.append(task)  # run inline by import_follows, after each window

        # A bulk import sets a graph up: no reader is connected to be told of it live, and no worker runs
        # beside it to handle a UserSeen meanwhile (README), so no activity is re-read after each commit.
        pipeline = Pipeline(stores, settings, res.metrics, send_task, no_updates, seen_concurrently=False)
        return asyncio.run(import_follows(follows, pipeline, tasks, progress or (lambda n: None),
                                          part=part, parts=parts, graph=graph))
    finally:
        res.close()


def _in_processes(settings: Settings, path: Path, default_time: int, jobs: int, advance: Any) -> int:
    context = multiprocessing.get_context("spawn")  # children open their own connections
    queue = context.Manager().Queue()
    with ProcessPoolExecutor(jobs, mp_context=context) as pool:
        futures = [pool.submit(import_part, settings, path, default_time, part, jobs, queue.put)
                   for part in range(jobs)]
        while not all(f.done() for f in futures):
            time.sleep(0.2)
            while not queue.empty():
                advance(queue.get())
        while not queue.empty():
            advance(queue.get())
        return sum(f.result() for f in futures)
