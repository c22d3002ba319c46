"""Idempotency-Key: a retried request publishes nothing new and gets the first response.

The key (per user) is claimed with a compare-and-set before anything is published, together with the
event the request would publish. Whoever holds the claim publishes that event and stores the response;
every other request with the key then gets that response. The claim is a lease: a request that died
while holding it (or failed to publish) leaves it to expire, and the next retry republishes the stored
event, the same post id, which the worker processes idempotently. Concurrent requests wait for the
holder rather than failing, so racing replicas both answer with the one post id.

`next_step` is the decision, pure; `once` runs it over an IdempotencyStore.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from enum import StrEnum

import orjson

from fanout.core.clock import Clock, wall_ms
from fanout.core.model import KeyRecord
from fanout.core.ports import IdempotencyStore

log = logging.getLogger(__name__)


class KeyReused(ValueError):
    """The key was used before, by this user, with another request (HTTP 409)."""


class Step(StrEnum):
    REPLAY = "replay"  # the first request was published: answer its response
    CONFLICT = "conflict"  # another request under this key
    WAIT = "wait"  # someone holds the claim: wait for its response
    TAKE_OVER = "take_over"  # the claim lapsed before a response: publish the stored event ourselves


def next_step(found: KeyRecord, request_hash: str, now_ms: int) -> Step:
    """What a request does with a key that already holds `found`."""
    if found.request_hash != request_hash:
        return Step.CONFLICT
    if found.response is not None:
        return Step.REPLAY
    return Step.WAIT if found.claimed_until > now_ms else Step.TAKE_OVER


def request_hash(endpoint: str, content: dict[str, object]) -> str:
    """The fingerprint of a request: its endpoint and its content as resolved (ids from the token)."""
    return hashlib.sha256(endpoint.encode() + b"\n" + orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).hexdigest()


async def once(store: IdempotencyStore, user_id: int, key: str, fingerprint: str, event: bytes,
               publish: Callable[[bytes], Awaitable[bytes]], lease_ms: int, clock_ms: Clock = wall_ms,
               poll_seconds: float = 0.05) -> tuple[bytes, bool]:
    """`publish(event)` at most once per (user, key) while the key lives; returns (response, replayed).
    `lease_ms` must exceed the longest publish (the producer's timeout), or two holders may overlap
    (harmless: they publish the same event)."""
    mine = KeyRecord(fingerprint, event, clock_ms() + lease_ms)
    found = await store.claim(user_id, key, mine)
    while found is not None and found != mine:  # equal: our own claim, seen by a retried request
        step = next_step(found, fingerprint, clock_ms())
        if step is Step.CONFLICT:
            raise KeyReused(f"Idempotency-Key {key[:64]!r} was used with another request; use a new key")
        if step is Step.REPLAY:
            assert found.response is not None
            return found.response, True
        if step is Step.TAKE_OVER:
            mine = replace(found, claimed_until=clock_ms() + lease_ms)
            if await store.replace(user_id, key, found.claimed_until, mine):
                break
        else:
            await asyncio.sleep(poll_seconds)
        found = await store.record(user_id, key)
        if found is None:  # expired meanwhile: claim it afresh
            mine = KeyRecord(fingerprint, event, clock_ms() + lease_ms)
            found = await store.claim(user_id, key, mine)
    try:
        response = await publish(mine.event)
    except BaseException:
        with contextlib.suppress(Exception):  # the lease expires anyway; the publish error is the news
            await store.replace(user_id, key, mine.claimed_until, replace(mine, claimed_until=0))
        raise
    if not await store.replace(user_id, key, mine.claimed_until, replace(mine, claimed_until=0, response=response)):
        log.warning("idempotency key of user %d: the lease lapsed while publishing; another request took over",
                    user_id)
    return response, False
