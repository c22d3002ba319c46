"""The IdempotencyStore contract (fanout/core/ports.py), on the in-memory adapter and real Cassandra alike."""

from __future__ import annotations

import asyncio
import uuid

from fanout.core.model import KeyRecord
from fanout.core.ports import IdempotencyStore


def key() -> str:
    return uuid.uuid4().hex


async def test_the_first_claim_owns_the_key_and_later_ones_see_it(keys: IdempotencyStore) -> None:
    k, record = key(), KeyRecord("h", b"\x00event", 123)
    assert await keys.record(1, k) is None
    assert await keys.claim(1, k, record) is None
    assert await keys.claim(1, k, KeyRecord("h2", b"other", 456)) == record
    assert await keys.record(1, k) == record
    assert await keys.claim(2, k, record) is None  # per user


async def test_replace_is_a_compare_and_set_on_the_lease(keys: IdempotencyStore) -> None:
    k = key()
    await keys.claim(1, k, KeyRecord("h", b"e", 100))
    done = KeyRecord("h", b"e", 0, b'{"post_id": 5}')
    assert not await keys.replace(1, k, 99, done)  # someone else's lease
    assert await keys.replace(1, k, 100, done)
    assert await keys.record(1, k) == done
    assert not await keys.replace(1, k, 100, KeyRecord("h", b"e", 7))
    assert not await keys.replace(1, key(), 0, done)  # a key never claimed is not created by a replace


async def test_racing_claims_have_one_winner(keys: IdempotencyStore) -> None:
    k = key()
    results = await asyncio.gather(*(keys.claim(1, k, KeyRecord("h", str(n).encode(), n + 1)) for n in range(6)))
    winners = [n for n, found in enumerate(results) if found is None]
    assert len(winners) == 1
    assert {found for found in results if found is not None} == {KeyRecord("h", str(winners[0]).encode(),
                                                                           winners[0] + 1)}


async def test_keys_expire_after_the_ttl_of_their_last_write(keys: IdempotencyStore) -> None:
    k = key()
    await keys.claim(1, k, KeyRecord("h", b"e", 1))
    await asyncio.sleep(4)  # of the fixture's 6 s TTL
    assert await keys.replace(1, k, 1, KeyRecord("h", b"e", 0, b"r"))  # renews the whole row
    await asyncio.sleep(4)  # 8 s after the claim: alive only by the renewal
    assert await keys.record(1, k) == KeyRecord("h", b"e", 0, b"r")
    await asyncio.sleep(3)
    assert await keys.record(1, k) is None
    assert await keys.claim(1, k, KeyRecord("h", b"again", 9)) is None
