"""fanout/read/seen.py: feed reads become UserSeen events at most once per debounce period per reader."""

from __future__ import annotations

import concurrent.futures
from typing import Any

from fanout.core.events import UserSeen
from fanout.read.seen import SeenRecorder


class Sink:
    def __init__(self) -> None:
        self.sent: list[tuple[int, int]] = []
        self.fail = False

    def send(self, event: UserSeen) -> concurrent.futures.Future[Any]:
        self.sent.append((event.user_id, event.event_time))
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        if self.fail:
            future.set_exception(ConnectionError("no broker"))
        else:
            future.set_result(None)
        return future


def test_a_reader_is_recorded_once_per_debounce_period() -> None:
    sink = Sink()
    seen = SeenRecorder(sink, debounce_ms=1000)
    for now in (0, 10, 999, 1000, 1500, 2000):
        seen.seen(7, now)
    assert sink.sent == [(7, 0), (7, 1000), (7, 2000)]


def test_a_send_that_failed_is_tried_again_at_the_next_read() -> None:
    sink = Sink()
    seen = SeenRecorder(sink, debounce_ms=1000)
    sink.fail = True
    seen.seen(7, 0)
    sink.fail = False
    seen.seen(7, 10)
    seen.seen(7, 20)
    assert sink.sent == [(7, 0), (7, 10)]


def test_beyond_the_bound_the_reader_who_read_least_recently_is_forgotten() -> None:
    sink = Sink()
    seen = SeenRecorder(sink, debounce_ms=1000, max_users=2)
    for user in (1, 2, 1, 3):  # 2 read least recently when 3 came
        seen.seen(user, 0)
    seen.seen(1, 5)  # still remembered: debounced
    seen.seen(2, 5)  # forgotten: sent again
    assert sink.sent == [(1, 0), (2, 0), (3, 0), (2, 5)]
