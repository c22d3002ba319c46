"""The guard of every coalescing flush (the Cassandra writes and reads, the feed updates)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Any


async def settling(send: Awaitable[None], futures: Sequence[asyncio.Future[Any]]) -> None:
    """Run a flush; should it fail in an unexpected way, its callers get the error instead of waiting forever."""
    try:
        await send
    except BaseException as exc:
        for future in futures:
            if not future.done():
                future.set_exception(exc)
        if not isinstance(exc, Exception):
            raise
