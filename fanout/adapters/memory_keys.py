"""Idempotency keys in memory, for unit tests: the same compare-and-set and TTL as the Cassandra adapter
(tests/contract runs one suite on both)."""

from __future__ import annotations

from collections.abc import Callable

from fanout.adapters.memory import clock_us
from fanout.core.model import KeyRecord


class MemoryKeys:
    def __init__(self, ttl_seconds: int, now_us: Callable[[], int] = clock_us) -> None:
        self.ttl_us = ttl_seconds * 1_000_000
        self.now_us = now_us
        self._keys: dict[tuple[int, str], tuple[KeyRecord, int]] = {}  # -> (record, expires at µs)

    async def claim(self, user_id: int, key: str, record: KeyRecord) -> KeyRecord | None:
        found = await self.record(user_id, key)
        if found is None:
            self._keys[(user_id, key)] = (record, self.now_us() + self.ttl_us)
        return found

    async def record(self, user_id: int, key: str) -> KeyRecord | None:
        entry = self._keys.get((user_id, key))
        return entry[0] if entry is not None and entry[1] > self.now_us() else None

    async def replace(self, user_id: int, key: str, claimed_until: int, record: KeyRecord) -> bool:
        found = await self.record(user_id, key)
        if found is None or found.claimed_until != claimed_until:
            return False
        self._keys[(user_id, key)] = (record, self.now_us() + self.ttl_us)
        return True
