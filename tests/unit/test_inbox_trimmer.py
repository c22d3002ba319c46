"""The worker's inbox trims (fanout/write/trimming.py): when an inbox is due, and what a trim leaves."""

from __future__ import annotations

import random

from fanout.adapters.memory import MemoryStorage
from fanout.core.ids import PostIdGenerator
from fanout.metrics import Metrics, sample
from fanout.settings import Settings
from fanout.write.trimming import InboxTrimmer


def trimmer(every: int, readers: int = 1000, seed: int = 7) -> InboxTrimmer:
    stores = MemoryStorage(Settings()).stores()
    return InboxTrimmer(stores, Metrics(), cap=5, every=every, readers=readers, rng=random.Random(seed))


def test_an_inbox_is_due_once_every_so_many_rows_pushed_there() -> None:
    t = trimmer(every=4)
    due = [u for _ in range(40) for u in t.due([1, 2, 2])]  # user 2 gets two rows per push
    assert 9 <= due.count(1) <= 10  # 40 rows, one trim per 4 (the first after a random start below 4)
    assert 19 <= due.count(2) <= 20


def test_an_inbox_given_many_rows_at_once_is_trimmed_once() -> None:
    t = trimmer(every=4)
    assert t.due([1] * 10 + [2]).count(1) == 1  # a backfill of 10 rows: one trim after it, not two
    assert t._pushed[1] < 4


def test_first_trims_of_a_big_fan_out_are_spread_over_the_pushes_that_follow() -> None:
    t = trimmer(every=10, readers=10_000)
    followers = list(range(10_000))
    firsts = [len(t.due(followers)) for _ in range(10)]
    assert all(800 <= n <= 1200 for n in firsts), firsts  # about a tenth of the inboxes on each post
    assert sum(firsts) == 10_000  # every inbox once in ten posts


def test_a_forgotten_inbox_starts_again_below_the_period() -> None:
    t = trimmer(every=3, readers=2)
    rounds = 0
    for _ in range(300):
        due = t.due([1, 2, 3])  # three inboxes, two remembered: user 1 is forgotten on every push
        rounds += 1 in due
    assert 70 <= rounds <= 130  # still trimmed about once in 3 pushes (its start is drawn below 3 each time)
    assert len(t._pushed) == 2


async def test_the_inboxes_due_are_trimmed_to_the_cap_and_counted() -> None:
    t = trimmer(every=1)  # every push: due at once
    ids = PostIdGenerator(node=3)
    pids = [ids.next_id() for _ in range(8)]
    await t.stores.inboxes.push_rows([(1, p) for p in pids] + [(2, p) for p in pids[:3]], author_id=9)
    await t.pushed([1, 2])
    assert await t.stores.inboxes.inbox_head(1, None, 100) == pids[::-1][:5]
    assert await t.stores.inboxes.inbox_head(2, None, 100) == pids[:3][::-1]
    assert sample(t.metrics, "fanout_inbox_trims_total", {}) == 2  # both read ...
    assert sample(t.metrics, "fanout_inbox_rows_trimmed_total", {}) == 3  # ... one over the cap
