"""Prometheus metrics on an explicit registry: one `Metrics` per process, built in its composition root.

Tests build their own `Metrics()` and read values from its registry; nothing registers globally.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0,
                   3.0, 5.0, 7.5, 10.0, 20.0, 30.0, 60.0)
RATE_BUCKETS = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0)  # events per day


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        # worker
        self.events_consumed = Counter("fanout_events_consumed", "Events consumed, by type", ["type"], registry=r)
        self.event_handling = Histogram("fanout_event_handling_seconds",
                                        "Time one event's handler ran (how long it held its batch), by type; "
                                        "follows: a run of one author's follows and unfollows handled together",
                                        ["type"], buckets=LATENCY_BUCKETS, registry=r)
        self.inbox_rows_written = Counter("fanout_inbox_rows_written", "Inbox rows written by fan-out", registry=r)
        self.last_inbox_write = Gauge("fanout_last_inbox_write_timestamp_seconds",
                                      "Unix time of this worker's last fan-out write (time() minus it grows while "
                                      "a fan-out stalls)", registry=r)
        self.last_batch = Gauge("fanout_last_batch_timestamp_seconds",
                                "Unix time at which this worker last finished a batch of events, by source topic",
                                ["source"], registry=r)
        self.posts_by_tier = Counter("fanout_posts", "Posts stored, by fan-out tier (push or pull)", ["tier"],
                                     registry=r)
        self.fanout_chunks = Counter("fanout_chunks_processed", "Fan-out chunk tasks processed", registry=r)
        self.fanout_duration = Histogram("fanout_fanout_duration_seconds",
                                         "Time to push one post (or one chunk) into follower inboxes",
                                         buckets=LATENCY_BUCKETS, registry=r)
        self.end_to_end_lag = Histogram("fanout_end_to_end_lag_seconds",
                                        "Event time of a post to its last inbox write (per post or chunk), by "
                                        "the author's follower count", ["followers"],
                                        buckets=LATENCY_BUCKETS, registry=r)
        self.dead_lettered = Counter("fanout_dead_lettered_events", "Events sent to the dead-letter topic",
                                     ["reason"], registry=r)
        self.event_retries = Counter("fanout_event_retries", "Events retried by the worker: kind=outage (a server "
                                     "was unreachable) or event (the event's own error)", ["kind", "error"], registry=r)
        self.parked = Counter("fanout_parked_events", "Events parked on the dead-letter topic after their handler "
                              "kept failing, by error class", ["error"], registry=r)
        self.outage_waits = Gauge("fanout_outage_waits", "Events waiting right now for Cassandra or Kafka to come "
                                  "back", registry=r)
        self.cassandra_errors = Counter("fanout_cassandra_errors", "Failed Cassandra requests, by error class",
                                        ["error"], registry=r)
        self.cassandra_retries = Counter("fanout_cassandra_retries", "Cassandra requests retried", registry=r)
        self.bulk_requests_allowed = Gauge("fanout_bulk_requests_allowed",
                                           "Requests a fan-out chunk may keep in flight now, as their latency "
                                           "allows (FANOUT_BULK_LATENCY_TOLERANCE)", registry=r)
        # notification feeds (the notifier)
        self.notification_rows = Counter("fanout_notification_rows_written", "Rows the notifier wrote: actor set "
                                         "members added or removed, groups written or deleted", ["table"], registry=r)
        self.notification_delivery = Histogram("fanout_notification_delivery_seconds",
                                               "Event time of a like, reply, mention or follow to its notification "
                                               "written, by kind", ["kind"], buckets=LATENCY_BUCKETS, registry=r)
        self.notification_reads = Counter("fanout_notification_reads", "Notification pages served", registry=r)
        self.notification_runs = Counter("fanout_notification_runs", "Runs of notices on one target, by where their "
                                         "starting state came from: memory (a target known whole) or the store",
                                         ["state"], registry=r)
        # a changing graph
        self.backfilled_rows = Counter("fanout_backfilled_rows", "Inbox rows copied on follow, demotion or "
                                       "regeneration", registry=r)
        self.purged_rows = Counter("fanout_purged_rows", "Inbox rows removed after an unfollow", registry=r)
        self.author_post_rate = Histogram("fanout_author_post_rate_per_day",
                                          "The author's decayed post rate (posts per day) at each post stored: the "
                                          "distribution over posts, no per-author label", buckets=RATE_BUCKETS,
                                          registry=r)
        self.reader_view_rate = Histogram("fanout_reader_view_rate_per_day",
                                          "The reader's decayed view rate (feed reads per day) at each feed read: "
                                          "the distribution over reads, no per-reader label", buckets=RATE_BUCKETS,
                                          registry=r)
        self.lossy_skipped = Counter("fanout_lossy_rows_skipped", "Inbox rows not pushed to over-followers "
                                     "(FANOUT_LOSSY_FOLLOWS)", registry=r)
        self.inbox_trims = Counter("fanout_inbox_trims", "Inboxes read to trim them to the cap", registry=r)
        self.trimmed_rows = Counter("fanout_inbox_rows_trimmed", "Inbox rows deleted below the cap", registry=r)
        self.deletes_applied = Counter("fanout_deletes_applied", "Post deletions applied", registry=r)
        self.deletes_refused = Counter("fanout_deletes_refused", "Deletes refused: the claimed author is not the "
                                       "post's", registry=r)
        self.tier_switches = Counter("fanout_tier_switches", "Authors crossing the celebrity threshold",
                                     ["direction"], registry=r)
        self.inactive_skipped = Counter("fanout_inactive_followers_skipped", "Followers not pushed to because "
                                        "they have not read for FANOUT_ACTIVE_DAYS", registry=r)
        self.regenerations = Counter("fanout_regenerations", "Inbox rebuilds of returning users, by phase",
                                     ["phase"], registry=r)
        self.gc_pause = Histogram("fanout_gc_pause_seconds", "Garbage collection pauses of the process, by "
                                  "generation", ["generation"], buckets=(0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01,
                                                                         0.02, 0.05, 0.1, 0.2, 0.5), registry=r)
        # read service
        self.read_latency = Histogram("fanout_read_latency_seconds", "Feed read latency", buckets=LATENCY_BUCKETS,
                                      registry=r)
        self.feed_reads = Counter("fanout_feed_reads", "Feed reads, by HTTP status", ["status"], registry=r)
        self.read_requests = Histogram("fanout_read_cassandra_requests", "Cassandra requests made by one feed read",
                                       buckets=(0, 1, 2, 3, 4, 6, 8, 16, 32, 64, 256), registry=r)
        self.post_cache = Counter("fanout_post_cache_lookups", "Post body lookups of the read cache, by result",
                                  ["result"], registry=r)
        self.head_cache = Counter("fanout_head_cache_lookups", "Timeline head lookups of the read cache, by result",
                                  ["result"], registry=r)
        self.reader_sets_cache = Counter("fanout_reader_sets_cache_lookups", "Readers' celebrity/hidden sets "
                                         "looked up in the read cache, by result", ["result"], registry=r)
        self.reader_page_cache = Counter("fanout_reader_page_cache_lookups", "Readers' first pages (state and "
                                         "inbox head) looked up in the read cache, by result", ["result"],
                                         registry=r)
        self.stream_connections = Gauge("fanout_stream_connections", "Readers connected to the live feed stream",
                                        registry=r, multiprocess_mode="livesum")
        self.stream_items = Counter("fanout_stream_items", "Items sent on live feed streams, by event (post, delete)",
                                    ["event"], registry=r)
        self.streams_ended = Counter("fanout_streams_ended", "Live streams the server ended, by reason "
                                     "(token_expired, overflow, refused: a limit answered 429)", ["reason"], registry=r)
        self.stream_lag = Histogram("fanout_stream_lag_seconds", "Acceptance of a post to its sending on a live "
                                    "stream", buckets=LATENCY_BUCKETS, registry=r)
        self.feed_updates = Counter("fanout_feed_updates_applied", "Worker feed updates applied to the read caches, "
                                    "by type", ["type"], registry=r)
        # ingest service
        self.ingest_requests = Counter("fanout_ingest_requests", "Ingest requests, by endpoint and HTTP status",
                                       ["endpoint", "status"], registry=r)
        self.idempotent_replays = Counter("fanout_idempotent_replays", "Requests answered with the first response "
                                          "of their Idempotency-Key", ["endpoint"], registry=r)
        self.rate_limited = Counter("fanout_rate_limited", "Requests answered 429 by a rate limit, by kind (writes, "
                                    "streams, unauthenticated)", ["kind"], registry=r)
        self.auth_rejections = Counter("fanout_auth_rejections", "Requests refused: 401 no or bad token, 403 "
                                       "acting as another user", ["status"], registry=r)
        self.events_published = Counter("fanout_events_published", "Events acknowledged by Kafka, by type",
                                        ["type"], registry=r)


def tune_gc(metrics: Metrics, gen0_threshold: int) -> None:
    """Fewer, cheaper garbage collections for a process serving from large in-memory caches, each one timed
    (`fanout_gc_pause_seconds`, by generation): a full collection over a big cache is a classic source of
    p99 spikes in a Python service. What exists at start (modules, settings, prepared statements) is frozen
    into the permanent generation, which no collection scans again; young collections run after
    `gen0_threshold` allocations instead of Python's 700 (most objects of a request die with it, freed by
    reference counting, so a young collection mostly finds survivors to promote)."""
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0_threshold, gen1, gen2)
    started: list[float] = [0.0]

    def callback(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            metrics.gc_pause.labels(str(info.get("generation", "?"))).observe(time.perf_counter() - started[0])

    gc.callbacks.append(callback)


def sample(metrics: Metrics, name: str, labels: dict[str, str] | None = None) -> float:
    """The current value of one sample (e.g. 'fanout_inbox_rows_written_total'), 0 if absent."""
    value = metrics.registry.get_sample_value(name, labels or {})
    return float(value or 0.0)
