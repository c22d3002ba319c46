"""A pipeline under fault: the project's own workers on a stack of its own, a workload, and an oracle of
every inbox row it must produce.

The oracle is a set of (user_id, post_id): every post of an author, in the inbox of every follower of
that author (no celebrities: the threshold is above every audience, so every post is pushed; no
deletes, unfollows or inactive readers). The check is set equality with the whole inbox table of the
keyspace: 0 missing and 0 extra. Seeding 10,000 follows of one author goes through the pipeline one
event after the other (minutes), so the big fan-out tests share one seeded keyspace and one oracle;
each test has topics and a consumer group of its own, and checks everything written so far.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cassandra.cluster import Cluster, Session
from cassandra.query import SimpleStatement

from deploy.processes import ProcessGroup
from fanout.adapters.cassandra import connect, migrate
from fanout.adapters.cassandra.session import is_transient
from fanout.core.events import Event, Followed
from fanout.lag import consumer_lag
from fanout.settings import Settings
from fanout.write.producer import EventProducer, ensure_topics

REPORT = Path(__file__).resolve().parents[2] / ".fanout" / "faults-report.jsonl"  # every run, appended
RESULTS: list[dict[str, Any]] = []  # this session's
FOLLOW_TIME = 1_790_000_000_000
AUTHOR = 1  # of the big fan-out tests' shared graph
FOLLOWERS = range(100_000, 110_000)  # 10,000 of them
PAGE_ATTEMPTS = 6  # of one page of a check's scan, 5 s apart


def scan(session: Session, query: str, fetch_size: int = 5000) -> Iterator[Any]:
    """Every row of a whole-table read, page by page, each page tried again on a timeout. Just after every
    node restarted (commit log replayed, hints and compactions running) a replica may miss the coordinator's
    range-read timeout (10 s) for one page: "received only 1 responses", seen in CI on 3 nodes. That says
    nothing about the rows, and the check is the rows; a page that fails `PAGE_ATTEMPTS` times still fails."""
    stmt = SimpleStatement(query, fetch_size=fetch_size)
    paging_state = None
    while True:
        for attempt in range(1, PAGE_ATTEMPTS + 1):
            try:
                page = session.execute(stmt, timeout=120, paging_state=paging_state)
                break
            except Exception as exc:
                if attempt == PAGE_ATTEMPTS or not is_transient(exc):
                    raise
                print(f"[rig] a page of {query!r} failed ({type(exc).__name__}: {exc}); again in 5 s", flush=True)
                time.sleep(5)
        yield from page.current_rows
        if not page.has_more_pages:
            return
        paging_state = page.paging_state


@dataclass
class Outcome:
    """One fault test's figures, for the report table."""

    fault: str
    times: int
    expected: int
    missing: int
    extra: int
    drain_seconds: float
    nodes: int
    command: str
    notes: dict[str, Any] = field(default_factory=dict)

    def record(self) -> None:
        row = {**self.__dict__, "at": time.strftime("%Y-%m-%d %H:%M:%S"), "commit": _commit()}
        RESULTS.append(row)
        REPORT.parent.mkdir(parents=True, exist_ok=True)
        with REPORT.open("a") as f:
            f.write(json.dumps(row) + "\n")


def _commit() -> str | None:
    """The commit under test, so that docs/faults.md (tests/faults/report.py) names it."""
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPORT.parents[1], capture_output=True,
                          text=True, check=False)
    return done.stdout.strip() or None


@dataclass
class Oracle:
    """What the inbox table of `keyspace` must hold, given every follow and post acknowledged so far."""

    keyspace: str
    followers: dict[int, set[int]] = field(default_factory=lambda: defaultdict(set))
    expected: set[tuple[int, int]] = field(default_factory=set)
    author_of: dict[int, int] = field(default_factory=dict)

    def followed(self, follower: int, author: int) -> None:
        """Every author here has fewer posts than FANOUT_FOLLOW_BACKFILL, so a follow copies all of them."""
        self.followers[author].add(follower)
        self.expected.update((follower, p) for p, a in self.author_of.items() if a == author)

    def posted(self, post_id: int, author: int) -> None:
        self.author_of[post_id] = author
        self.expected.update((f, post_id) for f in self.followers[author])


@dataclass
class Rig:
    settings: Settings
    processes: ProcessGroup
    producer: EventProducer
    cluster: Cluster
    session: Session
    oracle: Oracle
    rows_posted: int = 0  # inbox rows the posts published through this rig must make

    @property
    def expected(self) -> set[tuple[int, int]]:
        return self.oracle.expected

    # --- the workload ---------------------------------------------------------------------------------

    def follow(self, pairs: Sequence[tuple[int, int]]) -> None:
        """(follower, author) pairs, published and acknowledged; the oracle follows."""
        start = FOLLOW_TIME + sum(len(fs) for fs in self.oracle.followers.values())
        events: list[Event] = [Followed(event_time=start + i, follower_id=f, followee_id=a)
                               for i, (f, a) in enumerate(pairs)]
        self.publish(events)
        for f, a in pairs:
            self.oracle.followed(f, a)

    def post(self, author: int, n: int = 1) -> list[int]:
        """`n` posts by `author`, published and acknowledged; their rows join the oracle."""
        events = [self.producer.new_post(author, f"post by {author}") for _ in range(n)]
        self.publish(events)
        for e in events:
            self.oracle.posted(e.post_id, author)
        self.rows_posted += len(self.oracle.followers[author]) * n
        return [e.post_id for e in events]

    @contextmanager
    def fan_out_under_way(self, author: int, ahead: int = 3) -> Iterator[None]:
        """Keep `author`'s fan-out going while the block runs: a thread posts again whenever fewer than
        `ahead` posts' rows are left to write. A group change in the block then lands mid-fan-out, however
        fast the workers are (a fixed batch of posts can be written before a joining worker is ready).
        Rows left are counted from the live workers' counters, so no worker may restart in the block."""
        stop = threading.Event()
        errors: list[BaseException] = []

        def feed() -> None:
            try:
                while not stop.is_set():
                    if self.rows_left() < ahead * len(self.oracle.followers[author]):
                        self.post(author)
                    stop.wait(0.1)
            except BaseException as exc:  # surfaced in the test's thread below
                errors.append(exc)

        feeder = threading.Thread(target=feed, name="fan-out-feeder", daemon=True)
        feeder.start()
        try:
            yield
        finally:
            stop.set()
            feeder.join(60)
        if errors:
            raise errors[0]

    def publish(self, events: Sequence[Event], timeout: float = 300.0) -> None:
        futures = [self.producer.send(e) for e in events]
        for f in futures:
            f.result(timeout)

    # --- waiting and checking -------------------------------------------------------------------------

    def lag(self) -> int:
        return consumer_lag(self.settings)

    def drain(self, timeout: float = 600.0, alive: bool = True) -> float:
        """Wait until the worker group has processed everything; seconds waited. With `alive`, a worker
        that exited fails the wait at once."""
        started = time.monotonic()
        while True:
            if alive:
                self.processes.check_alive()
            try:
                if self.lag() == 0:
                    return time.monotonic() - started
            except Exception as exc:  # Kafka may still be coming back
                print(f"[rig] lag not known yet: {exc}", flush=True)
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"still {self.lag()} events behind after {timeout:.0f}s")
            time.sleep(0.5)

    def inbox(self) -> set[tuple[int, int]]:
        """Every inbox row (user, post), read at the configured read consistency. A partition holding only
        its reader's state (static columns: a follow writes their sets) reads as a null post id: not a row."""
        rows = scan(self.session, f"SELECT user_id, post_id FROM {self.settings.keyspace}.inbox")
        return {(r.user_id, r.post_id) for r in rows if r.post_id is not None}

    def compare(self, fault: str, times: int, drain_seconds: float, command: str, **notes: Any) -> Outcome:
        got = self.inbox()
        outcome = Outcome(fault, times, len(self.expected), len(self.expected - got), len(got - self.expected),
                          round(drain_seconds, 1), self.settings.stack.nodes, command, notes)
        outcome.record()
        print(f"[rig] {outcome}", flush=True)
        return outcome

    def worker_sum(self, name: str, label: str = "") -> float:
        """The sum over the live workers of a metric's samples (`name`, e.g. fanout_parked_events_total),
        those with `label` (e.g. kind="outage") only if given."""
        return sum(self.by_worker(name, label).values())

    def by_worker(self, name: str, label: str = "") -> dict[str, float]:
        """Each live worker's sum of a metric's samples, as in `worker_sum`; a worker not serving is left out."""
        sums = {}
        for worker in [n for n in self.processes.procs if n.startswith("worker")]:
            try:
                samples = self.processes.scrape(worker)
            except OSError:
                continue  # a worker being restarted
            sums[worker] = sum(v for k, v in samples.items() if k.split("{")[0] == name and label in k)
        return sums

    def failure_counts(self) -> dict[str, float]:
        """How the live workers handled failures: retries through an outage, retries of an event's own
        error, events parked."""
        return {"outage_retries": self.worker_sum("fanout_event_retries_total", 'kind="outage"'),
                "event_retries": self.worker_sum("fanout_event_retries_total", 'kind="event"'),
                "parked": self.worker_sum("fanout_parked_events_total")}

    def rows_written(self) -> float:
        return self.worker_sum("fanout_inbox_rows_written_total")

    def rows_by_worker(self) -> dict[str, float]:
        return self.by_worker("fanout_inbox_rows_written_total")

    def rows_left(self) -> float:
        """Inbox rows of this rig's posts not yet written (while no worker has restarted: a restarted
        worker's counter starts again at 0)."""
        return self.rows_posted - self.rows_written()

    def wait_rows(self, at_least: float, timeout: float = 300.0) -> float:
        """Wait until the live workers wrote `at_least` inbox rows (a fan-out under way); returns the count."""
        deadline = time.monotonic() + timeout
        while (rows := self.rows_written()) < at_least:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {rows:.0f} inbox rows written after {timeout:.0f}s")
            time.sleep(0.1)
        return rows


@contextmanager
def rig(stack: Settings, log_dir: Path, name: str, oracle: Oracle | None = None, workers: int = 2,
        argv: list[str] | None = None, **overrides: Any) -> Iterator[Rig]:
    """Topics and consumer group of their own on `stack` (and a keyspace, unless `oracle` names a seeded
    one), `workers` worker processes, a producer that rides out a broker outage (it retries for up to 5
    minutes), and a session to check with."""
    s = stack.isolated(f"faults-{name}-{str(int(time.time()))[-6:]}", celebrity_threshold=10**7, **overrides)
    oracle = oracle or Oracle(s.keyspace)
    s = dataclasses.replace(s, keyspace=oracle.keyspace)
    ensure_topics(s)
    migrate(s)
    names = ["worker", *(f"worker-{i}" for i in range(2, workers + 1))]
    processes = ProcessGroup(s, log_dir).start(*names, timeout=180, argv=argv)
    producer = EventProducer(s, **{"message.timeout.ms": 300_000})
    cluster, session = connect(s)
    try:
        yield Rig(s, processes, producer, cluster, session, oracle)
    finally:
        processes.stop()
        producer.close()
        cluster.shutdown()
