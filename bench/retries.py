"""`fanout bench retries`: what a call costs through each way of retrying it, in-process, no servers.

A call that succeeds is timed three ways, side by side in one run: awaited directly; through a tenacity
AsyncRetrying loop; and in the shape the hot paths use (`Cassandra.retrying`, the worker's runner): the first
try direct, tenacity only after a failure (fanout/retries.py `after_failure`). One call that fails once is
timed too: the path a transient error takes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import tenacity

from fanout import retries


async def _ok() -> int:
    return 1


def _tenacity() -> tenacity.AsyncRetrying:
    return tenacity.AsyncRetrying(retry=tenacity.retry_if_exception_type(OSError),
                                  stop=tenacity.stop_after_attempt(3), wait=tenacity.wait_none(), reraise=True)


async def _first_direct(attempt: Callable[[], Awaitable[int]], retrying: tenacity.AsyncRetrying) -> int:
    try:
        return await attempt()
    except OSError as error:
        return await retries.after_failure(error, attempt, retrying)


async def _timed(call: Callable[[], Awaitable[Any]], calls: int) -> float:
    """Microseconds per call, the best of three rounds (the least disturbed by the rest of the machine)."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(calls):
            await call()
        best = min(best, (time.perf_counter() - started) / calls * 1e6)
    return best


async def _measure(calls: int) -> dict[str, float]:
    retrying = _tenacity()
    fails = [0]

    async def fails_once() -> int:
        fails[0] += 1
        if fails[0] % 2:
            raise OSError("transient")
        return 1

    return {
        "direct": await _timed(_ok, calls),
        "tenacity": await _timed(lambda: retrying(_ok), calls),
        "first_direct": await _timed(lambda: _first_direct(_ok, retrying), calls),
        "first_direct_failing_once": await _timed(lambda: _first_direct(fails_once, retrying), calls // 10),
    }


def bench(calls: int) -> dict[str, Any]:
    us = asyncio.run(_measure(calls))
    return {"calls": calls, "us_per_call": {k: round(v, 3) for k, v in us.items()},
            "tenacity_over_first_direct": round(us["tenacity"] / us["first_direct"], 1)}
