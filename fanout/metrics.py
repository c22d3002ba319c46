"""Prometheus metrics on an explicit registry: one `Metrics` per process, built in its composition root.

Tests build their own `Metrics()` and read values from its registry; nothing registers globally.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0,
                   3.0, 5.0, 7.5, 10.0, 20.0, 30.0, 60.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        # worker
        self.events_consumed = Counter("fanout_events_consumed", "Events consumed, by type", ["type"], registry=r)
        self.inbox_rows_written = Counter("fanout_inbox_rows_written", "Inbox rows written by fan-out", registry=r)
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
        # a changing graph
        self.backfilled_rows = Counter("fanout_backfilled_rows", "Inbox rows copied on follow, demotion or "
                                       "regeneration", registry=r)
        self.purged_rows = Counter("fanout_purged_rows", "Inbox rows removed after an unfollow", registry=r)
        self.deletes_applied = Counter("fanout_deletes_applied", "Post deletions applied", registry=r)
        self.tier_switches = Counter("fanout_tier_switches", "Authors crossing the celebrity threshold",
                                     ["direction"], registry=r)
        self.inactive_skipped = Counter("fanout_inactive_followers_skipped", "Followers not pushed to because "
                                        "they have not read for FANOUT_ACTIVE_DAYS", registry=r)
        self.regenerations = Counter("fanout_regenerations", "Inbox rebuilds of returning users, by phase",
                                     ["phase"], registry=r)
        # read service
        self.read_latency = Histogram("fanout_read_latency_seconds", "Feed read latency", buckets=LATENCY_BUCKETS,
                                      registry=r)
        self.feed_reads = Counter("fanout_feed_reads", "Feed reads, by HTTP status", ["status"], registry=r)
        # ingest service
        self.ingest_requests = Counter("fanout_ingest_requests", "Ingest requests, by endpoint and HTTP status",
                                       ["endpoint", "status"], registry=r)
        self.events_published = Counter("fanout_events_published", "Events acknowledged by Kafka, by type",
                                        ["type"], registry=r)


def sample(metrics: Metrics, name: str, labels: dict[str, str] | None = None) -> float:
    """The current value of one sample (e.g. 'fanout_inbox_rows_written_total'), 0 if absent."""
    value = metrics.registry.get_sample_value(name, labels or {})
    return float(value or 0.0)
