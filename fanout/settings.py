"""All configuration, read once from the environment (FANOUT_*) into typed objects.

Two owners, one namespace: `StackSettings` is what the local launcher (`fanout stack`) needs to run the
servers (versions, heaps, binaries, where it keeps jars and data); `Settings` is what the project's
processes need at run time, and carries the launcher's part as `settings.stack`. Every field's env name
is FANOUT_<FIELD NAME IN UPPER CASE>, whichever object holds it; `Settings.env_names()` is the one
documented list. Explicit keyword arguments to `Settings.load` override the environment, so tests and
the benchmark build settings the same way the processes do, with other values.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fanout.core.model import Strategy

ENV_PREFIX = "FANOUT_"
PROJECT_ROOT = Path(__file__).resolve().parents[1]  # the checkout: the directory with pyproject.toml
# Who a Kafka client acts as: the services (the ingest API, `fanout publish`: they write events), the read
# service (feed reads out, feed updates in), the worker, or the admin that creates topics, users and ACLs
# (`fanout migrate`, the launcher, the dead-letter tool).
KafkaPrincipal = Literal["service", "reader", "worker", "admin"]
CassandraProcess = Literal["worker", "ingest", "reader"]
CASSANDRA_PROCESSES: tuple[CassandraProcess, ...] = ("worker", "ingest", "reader")


def project_path(path: Path) -> Path:
    """An absolute `path`: a relative one is taken from the project root, not the working directory, so
    every command finds the same state dir (and token secret) wherever it runs. Installed without a
    checkout (no pyproject.toml above fanout/), the working directory is the anchor."""
    if path.is_absolute():
        return path.resolve()
    root = PROJECT_ROOT if (PROJECT_ROOT / "pyproject.toml").exists() else Path.cwd()
    return (root / path).resolve()


def _env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


@dataclass(frozen=True)
class StackSettings:
    """The local launcher's settings: the servers `fanout stack up` starts, not how the pipeline runs."""

    state_dir: Path = field(default=Path(".fanout/state"), metadata={"doc": "configs, data, logs, pids"})
    nodes: int = field(default=1, metadata={"doc": "Kafka brokers and Cassandra nodes of the local stack (1 or 3)"})
    cache_dir: Path = field(default=Path(".fanout/cache"), metadata={"doc": "Maven repository and jar lists"})
    kafka_version: str = field(default="3.9.1", metadata={"doc": "org.apache.kafka:kafka_2.13 version"})
    kafka_controller_port: int = field(default=9093, metadata={"doc": "KRaft controller listener"})
    kafka_heap: str = field(default="512m", metadata={"doc": "-Xms/-Xmx of the broker"})
    cassandra_version: str = field(default="5.0.8", metadata={"doc": "org.apache.cassandra:cassandra-all version"})
    cassandra_storage_port: int = field(default=7000, metadata={"doc": "inter-node storage port"})
    cassandra_heap: str = field(default="1G", metadata={"doc": "-Xms/-Xmx of the node (pinned)"})
    prometheus_port: int = field(default=9090, metadata={"doc": "Prometheus web/API port"})
    prometheus_bin: str = field(default="/usr/bin/prometheus", metadata={"doc": "Debian's binary"})
    scrape_interval: str = field(default="2s", metadata={"doc": "Prometheus scrape interval"})
    stack_auth: bool = field(default=True, metadata={"doc": "a new stack requires credentials (Kafka SASL/SCRAM "
                                                            "+ ACLs, Cassandra roles); see deploy/credentials.py"})


@dataclass(frozen=True)
class Settings:
    """The run-time settings of the project's processes (worker, read and ingest services, tools)."""

    # --- where servers and services listen ---------------------------------------------------------
    host: str = field(default="127.0.0.1", metadata={"doc": "address every server and service binds"})
    kafka_port: int = field(default=9092, metadata={"doc": "broker listener"})
    kafka_partitions: int = field(default=4, metadata={"doc": "partitions of the event and chunk topics"})
    kafka_bootstrap_servers: str = field(default="", metadata={"doc": "bootstrap list; empty: host:port"})
    cassandra_port: int = field(default=9042, metadata={"doc": "CQL native transport"})
    cassandra_hosts: str = field(default="", metadata={"doc": "comma-separated contact points; empty: host"})
    keyspace: str = field(default="fanout", metadata={"doc": "Cassandra keyspace of every table"})
    replication: str = field(default="", metadata={"doc": "keyspace replication map, CQL syntax; empty: "
                                                          "SimpleStrategy with min(3, nodes) replicas"})
    write_consistency: str = field(default="LOCAL_QUORUM", metadata={"doc": "Cassandra writes (1 of 1 replica "
                                                                           "on one node, 2 of 3 on three)"})
    read_consistency: str = field(default="LOCAL_QUORUM", metadata={"doc": "Cassandra reads (overlaps writes)"})
    serial_consistency: str = field(default="LOCAL_SERIAL", metadata={"doc": "lightweight transactions"})
    read_api_port: int = field(default=8080, metadata={"doc": "read service HTTP port"})
    ingest_api_port: int = field(default=8081, metadata={"doc": "ingest service HTTP port"})
    page_ingest_port: int = field(default=0, metadata={
        "doc": "the ingest API's port as browsers reach it, where it is published elsewhere (compose); 0: "
               "FANOUT_INGEST_API_PORT"})
    page_origins: str = field(default="", metadata={
        "doc": "comma-separated origins (scheme://host:port) the feed page is opened at; browsers there may call "
               "the ingest API (CORS); empty: the read API's port at the host, 127.0.0.1 and localhost"})
    node_id: int = field(default=0, metadata={"doc": "post id node bits: 0 leases a free one (1-1023) at start, "
                                                     "1-1023 leases exactly that one"})
    node_lease_ttl: int = field(default=30, metadata={"doc": "seconds a node id lease outlives its last renewal"})
    worker_metrics_port: int = field(default=6066, metadata={"doc": "worker web/metrics port"})
    worker_data_dir: Path = field(default=Path(".fanout/state/faust"), metadata={"doc": "the worker's Faust data"})

    # --- topics -----------------------------------------------------------------------------------
    events_topic: str = field(default="fanout.author-events", metadata={"doc": "author-keyed events"})
    chunks_topic: str = field(default="fanout.fanout-chunks", metadata={"doc": "fan-out chunk tasks"})
    dead_letter_topic: str = field(default="fanout.dead-letter", metadata={"doc": "rejected events"})
    updates_topic: str = field(default="fanout.feed-updates", metadata={"doc": "worker -> read services: posts "
                                                                            "stored and deleted (cache updates)"})
    reads_topic: str = field(default="fanout.feed-reads", metadata={"doc": "read services -> worker: debounced "
                                                                          "feed reads (UserSeen), reader-keyed"})
    notifications_topic: str = field(default="fanout.notifications", metadata={
        "doc": "likes, replies, mentions and follows for the notifier: a lane of its own, keyed by target"})
    topic_replication_factor: int = field(default=0, metadata={"doc": "replicas of our topics; 0: min(3, nodes)"})
    topic_min_insync_replicas: int = field(default=0, metadata={"doc": "acks=all needs this many; 0: 2 when "
                                                                       "replicated 3+ times, else 1"})
    publish_timeout_ms: int = field(default=15_000, metadata={"doc": "producer gives up (HTTP 503) after this"})
    app_id: str = field(default="fanout", metadata={"doc": "Faust app id / consumer group"})
    worker_session_timeout: float = field(default=15.0, metadata={"doc": "a worker silent this long (crashed) "
                                                                         "loses its partitions to the others"})

    # --- fan-out policy and write path ------------------------------------------------------------
    strategy: Strategy = field(default=Strategy.HYBRID, metadata={"doc": "hybrid, push (everything) or pull"})
    celebrity_threshold: int = field(default=10_000, metadata={"doc": "followers at which an author is pulled"})
    celebrity_demote_ratio: float = field(default=0.8, metadata={"doc": "demoted below ratio x threshold"})
    chunk_size: int = field(default=1_000, metadata={"doc": "followers per fan-out chunk task"})
    # A batch of author events costs a few sequential round trips whatever its size (reads, then writes,
    # then the commit), so under a backlog bigger batches carry more events per round trip, at less CPU per
    # event. A batch is held in memory beside Faust's own read-ahead of up to 4,096 events
    # (stream_buffer_maxsize). At the nominal rate a batch holds what came in FANOUT_BATCH_SECONDS.
    batch_events: int = field(default=2_000, metadata={"doc": "author events the worker takes per batch"})
    # A chunk task carries up to FANOUT_CHUNK_SIZE rows: 200 of them are already up to 200,000 rows, and a
    # batch is committed (and replayed after a crash) whole.
    chunk_batch_events: int = field(default=200, metadata={"doc": "chunk tasks the worker takes per batch"})
    batch_seconds: float = field(default=0.02, metadata={"doc": "longest wait to fill a batch"})
    # One batch at a time waits on its slowest author. Batches in flight at once share the coalesced requests
    # and are acknowledged in the order they were taken (fanout/write/runner.py `InFlight`); each author's
    # events stay in order. More batches in flight overlap their round trips but are each smaller (more CPU
    # per event): one at a time is the default; measure with `fanout bench` before raising it.
    batches_in_flight: int = field(default=1, metadata={"doc": "batches of events the worker runs at once"})
    write_window: int = field(default=64, metadata={"doc": "concurrent Cassandra requests per fan-out"})
    bulk_write_window: int = field(default=8, metadata={"doc": "requests a chunk task keeps in flight while an "
                                                               "event's own writes are (alone: write_window)"})
    # > 0: alone, a chunk task's requests in flight follow their latency (fanout/adapters/cassandra/batching.py
    # `LatencyLimit`), so other clients' writes (the notifier's) wait behind a shorter queue, at the cost of
    # bulk rows/s (compare `fanout bench` with and without it): off by default.
    bulk_latency_tolerance: float = field(default=0.0, metadata={
        "doc": "a chunk task's requests in flight are cut while their latency exceeds this multiple of the "
               "lowest of the last ~10 s (0: always write_window)"})
    inbox_batch_size: int = field(default=50, metadata={"doc": "rows per write request (>1: batches by replica set)"})
    # A bulk import waits on no reader, so it trades latency for Cassandra's per-request cost: bigger
    # batches cost less time and less Cassandra CPU per edge. Batches are also cut at MAX_BATCH_BYTES (32 KiB).
    import_batch_rows: int = field(default=500, metadata={"doc": "rows per write request of `fanout import "
                                                                 "follows`"})
    inbox_ttl_days: int = field(default=30, metadata={"doc": "inbox rows expire after this many days"})
    inbox_cap: int = field(default=800, metadata={"doc": "rows an inbox keeps (its newest); deeper pages are read "
                                                         "from the timelines of the accounts followed"})
    inbox_trim_every: int = field(default=100, metadata={"doc": "a worker trims an inbox to the cap every this many "
                                                                "rows it pushes there"})
    lossy_follows: int = field(default=0, metadata={"doc": "a reader following more accounts than this gets each "
                                                           "pushed post with probability this/follows, one draw "
                                                           "per chunk (Bluesky's lossy timelines); 0: off"})
    inbox_trim_readers: int = field(default=200_000, metadata={"doc": "inboxes a worker counts pushes for (least "
                                                                       "recently pushed forgotten first)"})
    max_event_bytes: int = field(default=64 * 1024, metadata={"doc": "larger events are dead-lettered"})
    event_max_future_ms: int = field(default=300_000, metadata={"doc": "events dated further ahead of the "
                                                                      "worker's clock are dead-lettered"})
    max_followees_read: int = field(default=5000, metadata={"doc": "timelines merged per read, pull strategy"})
    max_following: int = field(default=5_000, metadata={"doc": "accounts one user may follow (a follow beyond "
                                                                "is a 403)"})
    rate_limit_reads: str = field(default="20/second;600/minute", metadata={
        "doc": "feed reads per user and read process (no person reads 20 pages a second)"})
    rate_limit_writes: str = field(default="10/second;120/minute", metadata={
        "doc": "posts, deletes, follows and unfollows per user and ingest process (limits notation; empty: off)"})
    rate_limit_streams: str = field(default="10/minute", metadata={"doc": "live stream connects per user and "
                                                                        "read process"})
    rate_limit_pulls: str = field(default="1/second;20/minute", metadata={
        "doc": "a returning reader's full pulls, and feed pages below an inbox's cap (a read per followee each), "
               "per user and read process; beyond, a returning reader's page comes from the inbox rebuilt so far, "
               "a deeper page is a 429"})
    rate_limit_unauthenticated: str = field(default="50/second;1000/minute", metadata={
        "doc": "requests that fail authentication per client address and process (429 beyond)"})
    delete_wait_ms: int = field(default=3000, metadata={"doc": "a delete of a post minted this recently waits up "
                                                               "to this long for the worker to store it"})

    # --- the read service's caches and processes --------------------------------------------------------
    read_workers: int = field(default=1, metadata={"doc": "read service processes (one per core at most)"})
    post_cache_mb: int = field(default=64, metadata={"doc": "memory for cached post bodies, per read process"})
    post_cache_ttl_s: float = field(default=300.0, metadata={"doc": "a cached post is re-read after this (bounds "
                                                                    "a delete whose feed update was missed)"})
    reader_sets_ttl_s: float = field(default=600.0, metadata={"doc": "a reader's cached sets are re-read after "
                                                                      "this, even if their version is the same"})
    gc_gen0_threshold: int = field(default=5_000, metadata={"doc": "allocations between young garbage "
                                                                   "collections of the read service (Python: 700)"})
    stream_reorder_ms: int = field(default=50, metadata={"doc": "live streams hold items this long to send "
                                                                "them in post id order"})
    stream_heartbeat_s: float = field(default=15.0, metadata={"doc": "a comment line keeps idle streams open"})
    stream_max_per_user: int = field(default=5, metadata={"doc": "live streams one user may hold open per read "
                                                                 "process (429 beyond)"})
    stream_max_connections: int = field(default=10_000, metadata={"doc": "live streams per read process (429 "
                                                                         "beyond)"})
    stream_queue_items: int = field(default=1_000, metadata={"doc": "items a stream may have waiting; a reader "
                                                                    "that falls further behind is dropped"})
    stream_send_timeout_s: float = field(default=30.0, metadata={"doc": "a stream whose client takes no bytes "
                                                                        "for this long is closed"})
    stream_replay_items: int = field(default=100, metadata={"doc": "feed items a reconnect with Last-Event-ID "
                                                                   "is sent at most"})
    head_cache_size: int = field(default=200, metadata={"doc": "newest post ids cached per pulled author"})
    head_cache_ttl_ms: int = field(default=5000, metadata={"doc": "a cached timeline head is re-read after this "
                                                                  "(bounds a new post whose update was missed)"})
    reader_page_ttl_ms: int = field(default=60_000, metadata={"doc": "a reader's cached inbox head and state are "
                                                                     "re-read after this (bounds a missed update)"})
    reader_page_cache_size: int = field(default=100_000, metadata={"doc": "readers whose inbox head is cached, per "
                                                                          "read process (~1.4 KB each)"})

    # --- a changing graph: backfill, inactive readers, regeneration ------------------------------------
    rebuild_chunk_authors: int = field(default=50, metadata={"doc": "followees per chunk task of a returning "
                                                                    "reader's inbox rebuild"})
    follow_backfill: int = field(default=200, metadata={"doc": "latest posts copied into an inbox on follow"})
    active_days: int = field(default=7, metadata={"doc": "followers not seen for longer get no pushes"})
    rate_half_life_hours: float = field(default=24.0, metadata={"doc": "half-life of the decayed post and view "
                                                                      "rates (fanout/core/rates.py)"})
    rate_keys: int = field(default=200_000, metadata={"doc": "authors (worker) or readers (read service) a process "
                                                             "keeps a rate for"})
    seen_debounce_seconds: int = field(default=3600, metadata={"doc": "read service emits UserSeen at most this often"})

    # --- retries ----------------------------------------------------------------------------------
    retry_attempts: int = field(default=8, metadata={"doc": "tries of a failed Cassandra write"})
    retry_base_delay: float = field(default=0.05, metadata={"doc": "first backoff, seconds (doubles)"})
    event_attempts: int = field(default=3, metadata={"doc": "tries of an event whose handler fails, then parked"})
    event_retry_delay: float = field(default=0.5, metadata={"doc": "first backoff between those tries (doubles)"})
    outage_max_delay: float = field(default=15.0, metadata={"doc": "longest backoff while a server is down"})
    outage_timeout: float = field(default=900.0, metadata={"doc": "worker exits (75) after an outage this long; "
                                                                  "0: waits forever"})

    # --- API authentication: bearer tokens (JWT) -----------------------------------------------------
    jwt_algorithm: str = field(default="HS256", metadata={"doc": "HS256 (local secret), RS256 or ES256"})
    jwt_secret_file: str = field(default="", metadata={"doc": "HS256 secret; empty: STATE_DIR/jwt-hs256.secret, "
                                                              "generated on first use"})
    jwt_public_key_file: str = field(default="", metadata={"doc": "RS256/ES256: PEM public key that verifies"})
    jwks_file: str = field(default="", metadata={"doc": "RS256/ES256: JWKS file (keys chosen by kid)"})
    jwt_private_key_file: str = field(default="", metadata={"doc": "RS256/ES256: PEM key `fanout token` signs with"})
    jwt_issuer: str = field(default="fanout-local", metadata={"doc": "required iss claim"})
    jwt_audience: str = field(default="fanout", metadata={"doc": "required aud claim"})
    jwt_leeway_seconds: int = field(default=30, metadata={"doc": "clock skew tolerated on exp/nbf/iat"})
    token_ttl_seconds: int = field(default=3600, metadata={"doc": "lifetime of a token from `fanout token`"})
    max_body_bytes: int = field(default=65_536, metadata={"doc": "larger request bodies are a 413"})
    idempotency_ttl_seconds: int = field(default=86_400, metadata={"doc": "how long an Idempotency-Key is kept"})

    # --- notification feeds -----------------------------------------------------------------------
    notification_window_seconds: int = field(default=86_400, metadata={
        "doc": "a notification group opened longer ago than this takes no new actors: the next opens a new one"})
    notification_retention_days: int = field(default=30, metadata={"doc": "notification groups expire this long "
                                                                           "after they opened"})
    notification_latest_actors: int = field(default=3, metadata={"doc": "actors a notification group names"})
    notification_run: int = field(default=50, metadata={"doc": "notices of one target written per logged batch"})
    notification_known_actors: int = field(default=1_000_000, metadata={
        "doc": "actors the notifier keeps in memory, of targets it saw from their first actor: a run on one of "
               "them needs no read (fanout/write/known_targets.py)"})
    # The notifier's lane waits on no bulk work, so it takes what came in 5 ms (not FANOUT_BATCH_SECONDS) and
    # keeps 4 batches in flight (each target's notices still in order, fanout/write/runner.py): a like waits
    # neither for a 20 ms window nor for the batch before it (`fanout bench notifications`).
    notification_batch_seconds: float = field(default=0.005, metadata={
        "doc": "longest wait of the notifier to fill a batch"})
    notification_batches_in_flight: int = field(default=4, metadata={
        "doc": "batches of notification events the notifier runs at once"})
    notifier_metrics_port: int = field(default=6076, metadata={"doc": "notifier metrics port"})

    # --- credentials for the servers (empty: none; the local stack's come from STATE_DIR/credentials.env) ---
    kafka_sasl_mechanism: str = field(default="SCRAM-SHA-512", metadata={"doc": "SASL mechanism when a user is set"})
    kafka_sasl_username: str = field(default="", metadata={"doc": "Kafka user of ingest/publish; empty: none"})
    kafka_sasl_password: str = field(default="", metadata={"doc": "its password"})
    kafka_reader_username: str = field(default="", metadata={"doc": "Kafka user of the read service; empty: "
                                                                   "the above"})
    kafka_reader_password: str = field(default="", metadata={"doc": "its password"})
    kafka_worker_username: str = field(default="", metadata={"doc": "Kafka user of the worker; empty: the above"})
    kafka_worker_password: str = field(default="", metadata={"doc": "its password"})
    kafka_admin_username: str = field(default="", metadata={"doc": "Kafka super user: topics, users, ACLs "
                                                                   "(migrate); empty: the services' user"})
    kafka_admin_password: str = field(default="", metadata={"doc": "its password"})
    cassandra_username: str = field(default="", metadata={"doc": "Cassandra role that owns the schema (migrate), "
                                                                 "and of any process without its own; empty: none"})
    cassandra_password: str = field(default="", metadata={"doc": "Cassandra role's password"})
    cassandra_worker_username: str = field(default="", metadata={"doc": "the worker's Cassandra role: reads and "
                                                                        "writes the tables; empty: the above"})
    cassandra_worker_password: str = field(default="", metadata={"doc": "its password"})
    cassandra_ingest_username: str = field(default="", metadata={"doc": "the ingest API's Cassandra role: reads, "
                                                                        "writes its leases and keys; empty: the owner"})
    cassandra_ingest_password: str = field(default="", metadata={"doc": "its password"})
    cassandra_reader_username: str = field(default="", metadata={"doc": "the read service's Cassandra role: reads "
                                                                        "only; empty: the owner"})
    cassandra_reader_password: str = field(default="", metadata={"doc": "its password"})
    cassandra_admin_username: str = field(default="", metadata={"doc": "Cassandra superuser that creates the "
                                                                       "roles (the launcher, compose's migrate)"})
    cassandra_admin_password: str = field(default="", metadata={"doc": "its password"})

    # --- the local launcher's own settings (FANOUT_STATE_DIR, FANOUT_KAFKA_VERSION, ...) ------------
    stack: StackSettings = field(default_factory=StackSettings, metadata={"doc": ""})

    def __post_init__(self) -> None:
        if not isinstance(self.strategy, Strategy):  # given as text by an override or dataclasses.replace
            object.__setattr__(self, "strategy", _strategy(self.strategy))

    @classmethod
    def load(cls, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from `env` (default: os.environ), with explicit keyword overrides on top. An override
        may name a field of either object (`kafka_port=...`, `state_dir=...`)."""
        env = dict(os.environ) if env is None else env
        stack_names = {f.name for f in dataclasses.fields(StackSettings)}
        stack_overrides = {k: overrides.pop(k) for k in list(overrides) if k in stack_names}
        stack = overrides.pop("stack", None) or _from_env(StackSettings, env, {})
        if stack_overrides:
            stack = dataclasses.replace(stack, **stack_overrides)
        return _from_env(cls, env, {**overrides, "stack": stack})

    @classmethod
    def env_names(cls) -> dict[str, str]:
        """Every FANOUT_* name with its documentation (for the README and the compose check)."""
        return {_env_name(f.name): f.metadata.get("doc", "") for f in _fields()}

    def isolated(self, name: str, **overrides: Any) -> Settings:
        """These settings with a keyspace, topics and consumer group of their own (a demo, a benchmark
        scenario or a test run), so runs never share state."""
        return dataclasses.replace(
            self, keyspace=name.replace("-", "_"), events_topic=f"{name}.author-events",
            chunks_topic=f"{name}.fanout-chunks", dead_letter_topic=f"{name}.dead-letter",
            updates_topic=f"{name}.feed-updates", reads_topic=f"{name}.feed-reads",
            notifications_topic=f"{name}.notifications", app_id=name, **overrides,
        )

    def to_env(self) -> dict[str, str]:
        """These settings as FANOUT_* variables, to hand to a child process."""
        values = {**dataclasses.asdict(self.stack), **dataclasses.asdict(self)}
        return {_env_name(f.name): str(values[f.name]) for f in _fields()}

    @property
    def node_hosts(self) -> list[str]:
        """Where the local stack's nodes listen: the host, or 127.0.0.1..N for N nodes (same ports)."""
        n = self.stack.nodes
        return [self.client_host] if n == 1 else [f"127.0.0.{i}" for i in range(1, n + 1)]

    @property
    def kafka_bootstrap(self) -> str:
        return self.kafka_bootstrap_servers or ",".join(f"{h}:{self.kafka_port}" for h in self.node_hosts)

    def as_process(self, process: CassandraProcess) -> Settings:
        """These settings as `process` holds them: its own Cassandra role as the one it connects with (the
        owner's where it has none), its own Kafka user, and no other login, so a compromised process cannot
        use one."""
        own = getattr(self, f"cassandra_{process}_username")
        login = (own, getattr(self, f"cassandra_{process}_password")) if own else (
            self.cassandra_username, self.cassandra_password)
        # Its own Kafka user (the worker's, the read service's), or the services' where it has none.
        kafka = {"worker": "worker", "reader": "reader", "ingest": "sasl"}[process]
        if not getattr(self, f"kafka_{kafka}_username"):
            kafka = "sasl"
        cleared = [*(f"cassandra_{who}" for who in ("admin", *CASSANDRA_PROCESSES)),
                   *(f"kafka_{who}" for who in ("admin", "sasl", "reader", "worker") if who != kafka)]
        others: dict[str, Any] = {f"{prefix}_{part}": "" for prefix in cleared for part in ("username", "password")}
        return dataclasses.replace(self, **others, cassandra_username=login[0], cassandra_password=login[1])

    def kafka_credentials(self, principal: KafkaPrincipal = "service") -> tuple[str, str]:
        """(user, password) of `principal`; a reader, worker or admin without a user of its own is the
        services' user (a deployment with one Kafka user), and ("", "") means no SASL."""
        user, password = {
            "service": (self.kafka_sasl_username, self.kafka_sasl_password),
            "reader": (self.kafka_reader_username, self.kafka_reader_password),
            "worker": (self.kafka_worker_username, self.kafka_worker_password),
            "admin": (self.kafka_admin_username, self.kafka_admin_password),
        }[principal]
        return (user, password) if user else (self.kafka_sasl_username, self.kafka_sasl_password)

    def kafka_config(self, principal: KafkaPrincipal = "service") -> dict[str, Any]:
        """librdkafka's connection settings: the bootstrap list, and SASL as `principal` when it has a user."""
        config: dict[str, Any] = {"bootstrap.servers": self.kafka_bootstrap}
        user, password = self.kafka_credentials(principal)
        if user:
            config.update({"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": self.kafka_sasl_mechanism,
                           "sasl.username": user, "sasl.password": password})
        return config

    @property
    def cassandra_contact_points(self) -> list[str]:
        return [h.strip() for h in self.cassandra_hosts.split(",") if h.strip()] or self.node_hosts

    @property
    def keyspace_replication(self) -> str:
        return self.replication or f"{{'class': 'SimpleStrategy', 'replication_factor': {min(3, self.stack.nodes)}}}"

    @property
    def topic_replicas(self) -> int:
        return self.topic_replication_factor or min(3, self.stack.nodes)

    @property
    def min_insync_replicas(self) -> int:
        return self.topic_min_insync_replicas or (2 if self.topic_replicas >= 3 else 1)

    @property
    def client_host(self) -> str:
        """Where clients connect when no explicit server list is set (a wildcard bind is not an address)."""
        return "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host

    @property
    def browser_ingest_port(self) -> int:
        """The port the feed page sends its writes to."""
        return self.page_ingest_port or self.ingest_api_port

    @property
    def feed_page_origins(self) -> list[str]:
        """Where browsers open the feed page: FANOUT_PAGE_ORIGINS, else the read API on this host by each of
        its local names (a browser sends the origin as typed: 127.0.0.1 and localhost are two)."""
        given = [o.strip().rstrip("/") for o in self.page_origins.split(",") if o.strip()]
        hosts = dict.fromkeys((self.client_host, "127.0.0.1", "localhost"))
        return given or [f"http://{h}:{self.read_api_port}" for h in hosts]

    @property
    def jwt_secret_path(self) -> Path:
        """The HS256 secret: FANOUT_JWT_SECRET_FILE, else in the stack's state dir (anchored like it)."""
        return project_path(Path(self.jwt_secret_file) if self.jwt_secret_file else
                            self.stack.state_dir / "jwt-hs256.secret")

    @property
    def inbox_ttl_seconds(self) -> int:
        return self.inbox_ttl_days * 86_400

    @property
    def active_ms(self) -> int:
        return self.active_days * 86_400_000


def _fields() -> list[dataclasses.Field[Any]]:
    """The settings fields of both objects (not the `stack` field that nests one in the other)."""
    return [*dataclasses.fields(StackSettings), *(f for f in dataclasses.fields(Settings) if f.name != "stack")]


def _from_env(cls: Any, env: dict[str, str], overrides: dict[str, Any]) -> Any:
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        raw = env.get(_env_name(f.name))
        if raw is not None and f.name != "stack":
            values[f.name] = _parse(f, raw)
    values.update(overrides)
    return cls(**values)


def _strategy(raw: Any) -> Strategy:
    try:
        return Strategy(raw)
    except ValueError:
        choices = ", ".join(s.value for s in Strategy)
        raise ValueError(f"FANOUT_STRATEGY={raw!r} is not one of {choices}") from None


def _parse(f: dataclasses.Field[Any], raw: str) -> Any:
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "Path":
            return Path(raw)
        if kind == "bool":
            return {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}[raw.lower()]
    except (ValueError, KeyError) as exc:
        raise ValueError(f"{_env_name(f.name)}={raw!r} is not a valid {kind}") from exc
    return raw
