"""The notifier: notification feeds, on a lane of their own.

Likes, replies, mentions and follows are published on the notifications topic (keyed by the post liked,
replied to or mentioned from, or the user followed) and consumed here, by a process and consumer group of
their own (`fanout notifier`): a celebrity's fan-out, a backlog of posts or a rebuild in the worker never
queues in front of them, neither in Kafka nor in an event loop.

Each batch's events are grouped by key (fanout/write/runner.py), and a key's notices by their (owner, kind,
target); each target's run is decided by `fanout.core.notifications.apply` from its state (kept in memory for the
targets known whole, fanout/write/known_targets.py, else read), and written in one logged batch, at most
FANOUT_NOTIFICATION_RUN notices at a time. Targets run concurrently.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any

import faust

from fanout.adapters.kafka_access import notifier_group
from fanout.core import notifications
from fanout.core.clock import wall_ms
from fanout.core.codec import check_event, decode_notification_event, encode
from fanout.core.events import Event, NotificationChanged
from fanout.core.notifications import Grouping, Notice
from fanout.core.ports import NotificationStore
from fanout.metrics import Metrics
from fanout.settings import Settings
from fanout.write.faust_app import bytes_topic, consume, faust_app
from fanout.write.known_targets import KnownTargets
from fanout.write.runner import BatchRunner, RetryPolicy

Announce = Callable[[NotificationChanged], Awaitable[None]]


async def _nobody(update: NotificationChanged) -> None:
    return None


class Notifier:
    def __init__(self, store: NotificationStore, settings: Settings, metrics: Metrics,
                 announce: Announce = _nobody, now_ms: Callable[[], int] = wall_ms) -> None:
        """`announce` sends each group written to the read services (their live streams), after the write;
        `now_ms` is the store's clock (when an open group has expired)."""
        self.store = store
        self.metrics = metrics
        self.announce = announce
        self.grouping = Grouping(settings.notification_window_seconds * 1000, settings.notification_latest_actors)
        self.run_size = max(1, settings.notification_run)
        self.known = KnownTargets(settings.notification_retention_days * 86_400_000, settings.notification_known_actors,
                                  now_ms)

    async def handle(self, event: Event) -> None:
        await self.handle_group([event])

    async def handle_group(self, events: Sequence[Event]) -> None:
        """The events of one key, in order."""
        runs: dict[tuple[int, str, int], list[Notice]] = {}
        for e in events:
            for n in notifications.notices(e):
                runs.setdefault(n.subject, []).append(n)
        # Every target ends before a failure is raised: the runner then handles the events again one by one,
        # and a target's runs must never overlap (nor the next batch's, which waits for this group only).
        outcomes = await asyncio.gather(*(self._target(run) for run in runs.values()), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        for e in events:
            self.metrics.events_consumed.labels(e.TYPE).inc()

    async def _target(self, run: list[Notice]) -> None:
        owner, kind, target = run[0].subject
        for i in range(0, len(run), self.run_size):
            part = run[i:i + self.run_size]
            epoch = self.known.epoch
            known = self.known.state(run[0].subject, part)
            self.metrics.notification_runs.labels("store" if known is None else "memory").inc()
            if known is not None:
                state = replace(known, read_up_to=await self.store.read_mark(owner))
            else:
                state = await self.store.target_state(owner, kind, target, {n.actor for n in part})
            change = notifications.apply(state, part, self.grouping)
            if change.empty:
                continue
            try:
                await self.store.apply(owner, kind, target, change)
            except BaseException:
                self.known.forget(run[0].subject)  # written or not: the store is asked next time
                raise
            self.known.applied(run[0].subject, state, change, epoch)
            self.metrics.notification_rows.labels("members").inc(len(change.joined) + len(change.left))
            self.metrics.notification_rows.labels("groups").inc(len(change.groups) + len(change.emptied))
            now = wall_ms()
            for g in change.groups:
                await self.announce(NotificationChanged(now, owner, g.group_id, kind, target, g.actors, g.latest,
                                                        g.first_at, g.updated_at))
            for gid in change.emptied:
                await self.announce(NotificationChanged(now, owner, gid, kind, target, 0, (), 0, 0))
            for n in part:
                if n.actor in change.joined or n.actor in change.left:
                    self.metrics.notification_delivery.labels(kind).observe(max(0, now - n.at) / 1000)


def build_notifier_app(settings: Settings, metrics: Metrics, notifier_for: Callable[[Announce], Notifier]) -> faust.App:
    """The notifier's Faust app; `notifier_for(announce)` builds the Notifier once the updates topic exists."""
    app = faust_app(settings, notifier_group(settings))
    topic = bytes_topic(app, settings.notifications_topic, settings.kafka_partitions)
    dead_letters = bytes_topic(app, settings.dead_letter_topic, 1)
    updates = bytes_topic(app, settings.updates_topic, settings.kafka_partitions)

    async def announce(update: NotificationChanged) -> None:
        # Queued for Kafka, not awaited: a live stream is told what the store already holds, and a lost
        # announcement costs a reader only the live refresh (the next GET has it).
        await updates.send(key=update.key, value=encode(update), force=True)

    notifier = notifier_for(announce)

    def partitions_moved(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        notifier.known.clear()  # another notifier may write these targets, or may have meanwhile

    app.on_partitions_revoked.connect(partitions_moved)
    app.on_partitions_assigned.connect(partitions_moved)

    async def send_dead_letter(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> None:
        delivered = await dead_letters.send(key=key, value=value, headers=headers, force=True)
        await delivered

    def decode(value: bytes | None, key: bytes | None) -> Event:
        event = decode_notification_event(value, key, settings.max_event_bytes)
        return check_event(event, wall_ms(), settings.event_max_future_ms)

    runner = BatchRunner(settings.notifications_topic, decode, notifier.handle, send_dead_letter, metrics,
                         RetryPolicy.of(settings), handle_group=notifier.handle_group)

    @app.agent(topic, concurrency=1)
    async def notices(stream: Any) -> None:
        await consume(stream, runner, settings.batch_events, settings.notification_batch_seconds,
                      settings.notification_batches_in_flight)

    return app

