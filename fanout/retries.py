"""Trying again: one exponential backoff, on tenacity, for every retry in the project.

Hot paths (each Cassandra request, each event the worker handles) make their first try directly and hand
only a failure to tenacity (`after_failure`): a call through tenacity's loop costs about a hundred times a
direct call (`fanout bench retries` measures both), and nearly every call succeeds at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import tenacity
from tenacity.wait import wait_base

T = TypeVar("T")


def backoff(first: float, maximum: float, jitter: bool = False) -> wait_base:
    """Waits of `first`, twice that, four times ..., up to `maximum`. Jittered, each wait also gets up to
    `first` more at random, so that clients failing together do not come back together."""
    if jitter:
        return tenacity.wait_exponential_jitter(initial=first, max=maximum, jitter=first)
    return tenacity.wait_exponential(multiplier=first, max=maximum)


def delay(wait: wait_base, retry: int) -> float:
    """The wait before retry number `retry` (1, 2, ...), for a loop that is not one call (a restarted
    process)."""
    state = tenacity.RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = retry
    return float(wait(state))


async def after_failure(error: BaseException, attempt: Callable[[], Awaitable[T]],
                        retrying: tenacity.AsyncRetrying) -> T:
    """Go on from a first try of `attempt` that failed with `error`: `retrying` decides whether and when to
    try again (its predicates, stop, waits and callbacks see `error` as its own first try's), and what is
    raised in the end. `retrying` may be shared: each failure runs a copy (tenacity keeps a call's state on
    its Retrying object, and concurrent calls on one event loop would share it)."""
    tries = 0

    async def again() -> T:
        nonlocal tries
        tries += 1
        if tries == 1:
            raise error
        return await attempt()

    return await retrying.copy()(again)
