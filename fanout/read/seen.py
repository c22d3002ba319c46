"""Recording feed reads as debounced UserSeen events (the worker keeps readers' edges active from them)."""

from __future__ import annotations

import concurrent.futures
import logging
from typing import Any, Protocol

import cachetools

from fanout.core.events import UserSeen

log = logging.getLogger(__name__)


class EventSink(Protocol):
    def send(self, event: UserSeen) -> concurrent.futures.Future[Any]: ...


class SeenRecorder:
    """Publishes UserSeen for a reader at most once per debounce period, never a database write per read.
    The memory is only an optimisation: a second replica or a restart sends a duplicate, which the worker
    ignores."""

    def __init__(self, sink: EventSink, debounce_ms: int, max_users: int = 200_000) -> None:
        self.sink = sink
        self.debounce_ms = debounce_ms
        # Bounded: the reader who read least recently is forgotten first (and sends once more when back).
        self.last_sent: cachetools.LRUCache[int, int] = cachetools.LRUCache(max_users)

    def seen(self, user_id: int, now_ms: int) -> None:
        if now_ms - self.last_sent.get(user_id, -self.debounce_ms) < self.debounce_ms:
            return
        self.last_sent[user_id] = now_ms

        def delivered(future: concurrent.futures.Future[Any]) -> None:
            if future.exception() is not None:  # not recorded: let the next read try again
                self.last_sent.pop(user_id, None)
                log.warning("could not record that user %d read their feed: %s", user_id, future.exception())

        self.sink.send(UserSeen(event_time=now_ms, user_id=user_id)).add_done_callback(delivered)
