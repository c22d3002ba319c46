"""The fastest bare cassandra-driver loops on our Cassandra: the yardstick for the pipeline's fan-out.

Inbox inserts (one post to `rows` followers, the pipeline's TTL) as single rows or multi-partition unlogged
batches of 10/50/100, each with a sliding window in flight, on protocol v4 and v5; single rows through our
asyncio bridge (`Cassandra.run_window`) for its cost; a read loop of inbox pages. In a keyspace of its own.

And the floor of a post's own writes (`post_rows`): many small posts, each written as the pipeline must (its
post row, its timeline entry, then its inbox rows), in the pipeline's batches and window, with nothing else (no
Kafka, no reads, no decisions). Its rows/s over the best insert rate is the most a fan-out ratio can reach at
that many inbox rows per post, however fast the rest of the pipeline gets.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, Session
from cassandra.query import BatchStatement, BatchType, PreparedStatement, named_tuple_factory, tuple_factory
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from bench.stats import percentile
from deploy.recorded import on_stack
from fanout.adapters.cassandra.session import Cassandra
from fanout.adapters.cassandra.session import connect as connect_cluster
from fanout.metrics import Metrics
from fanout.settings import Settings

SHAPES = (("single", 1), ("batch10", 10), ("batch50", 50), ("batch100", 100))
PROTOCOLS = (4, 5)
AUTHOR = 7
READER = 0  # fan-out rows go to users 1..rows; the read loop pages user 0's inbox
INBOX_CQL = """CREATE TABLE {ks}.inbox (
    user_id bigint, post_id bigint, author_id bigint, PRIMARY KEY ((user_id), post_id)
) WITH CLUSTERING ORDER BY (post_id DESC) AND gc_grace_seconds = 10800"""
# The pipeline's own statements (fanout/adapters/cassandra), so only the loop around them differs.
PUSH_CQL = "INSERT INTO {ks}.inbox (user_id, post_id, author_id) VALUES (?, ?, ?) USING TTL ?"
PAGE_CQL = "SELECT post_id FROM {ks}.inbox WHERE user_id = ? AND post_id < ? LIMIT ?"
# The rows a post itself writes (fanout/adapters/cassandra/posts.py), in tables shaped like ours.
POSTS_CQL = """CREATE TABLE {ks}.posts (
    post_id bigint PRIMARY KEY, author_id bigint, body text, tier text, deleted boolean, deleted_by bigint)"""
TIMELINE_CQL = """CREATE TABLE {ks}.author_timeline (
    author_id bigint, post_id bigint, PRIMARY KEY ((author_id), post_id)) WITH CLUSTERING ORDER BY (post_id DESC)"""
POST_CQL = ("INSERT INTO {ks}.posts (post_id, author_id, body, tier, deleted) VALUES (?, ?, ?, 'push', false) "
            "USING TIMESTAMP ?")
TIMELINE_ENTRY_CQL = "INSERT INTO {ks}.author_timeline (author_id, post_id) VALUES (?, ?)"
# Inbox rows per post of the floor loops: about the hybrid's and push-only's write amplification in `fanout bench`.
ROWS_PER_POST = (5, 20)
FLOOR_USERS = 10_000  # authors and followers are drawn from this many users
TUPLES = "tuples"  # an execution profile returning plain tuples (the default builds named tuples)
Request = tuple[Any, Sequence[Any] | None]
T = TypeVar("T")


def drop_keyspace(session: Session, keyspace: str) -> None:
    """Drop `keyspace` if it exists. Asked first, because on servers with logins `DROP KEYSPACE IF EXISTS` of
    a keyspace that is not there needs DROP on every keyspace, and the project's role may drop only the
    keyspaces it created."""
    found = session.execute("SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name = %s",
                            (keyspace,), timeout=60).one()
    if found is not None:
        session.execute(f"DROP KEYSPACE {keyspace}", timeout=120)


def connect(settings: Settings, protocol_version: int) -> tuple[Cluster, Session]:
    """The project's connection, with the driver's default named-tuple rows (what a plain loop gets) and a
    profile with plain tuple rows."""
    return connect_cluster(settings, protocol_version=protocol_version,
                           row_factories={EXEC_PROFILE_DEFAULT: named_tuple_factory, TUPLES: tuple_factory})


def windowed(session: Session, requests: Iterable[Request], window: int, latencies: list[float] | None = None,
             profile: object = EXEC_PROFILE_DEFAULT) -> int:
    """Send every request, at most `window` in flight, released by the driver's own callbacks; returns how
    many were sent. After a failure no new request starts; the first error is raised once all settle."""
    slots = threading.Semaphore(window)
    errors: list[BaseException] = []

    def done(_: Any) -> None:
        slots.release()

    def failed(exc: BaseException) -> None:
        errors.append(exc)
        slots.release()

    def timed(start: float, into: list[float]) -> Callable[[Any], None]:
        def settle(_: Any) -> None:
            into.append(time.perf_counter() - start)
            slots.release()
        return settle

    sent = 0
    for stmt, params in requests:
        slots.acquire()
        if errors:
            slots.release()
            break
        callback = done if latencies is None else timed(time.perf_counter(), latencies)
        session.execute_async(stmt, params, execution_profile=profile).add_callbacks(callback, failed)
        sent += 1
    for _ in range(window):  # every slot back: nothing in flight
        slots.acquire()
    if errors:
        raise errors[0]
    return sent


def until(deadline: float, requests: Iterable[T]) -> Iterator[T]:
    for request in requests:
        if time.perf_counter() > deadline:
            return
        yield request


def pushes(stmt: PreparedStatement, size: int, rows: int, post_id: int, ttl: int) -> Iterator[Request]:
    """One post to followers 1..rows: single-row requests, or multi-partition unlogged batches of `size`."""
    if size == 1:
        yield from ((stmt, (u, post_id, AUTHOR, ttl)) for u in range(1, rows + 1))
        return
    for first in range(1, rows + 1, size):
        batch = BatchStatement(batch_type=BatchType.UNLOGGED)
        for u in range(first, min(first + size, rows + 1)):
            batch.add(stmt, (u, post_id, AUTHOR, ttl))
        yield batch, None


def posts_with_rows(post_stmt: PreparedStatement, timeline_stmt: PreparedStatement, push_stmt: PreparedStatement,
                    per_post: int, rows: int, first_post: int, ttl: int, batch: int) -> Iterator[tuple[Request, int]]:
    """Posts until `rows` inbox rows: each one's post row, timeline entry and `per_post` inbox rows of random
    followers, the statements of consecutive posts cut into multi-partition unlogged batches of `batch`.
    Yields each request with the inbox rows in it."""
    rng = random.Random(first_post)
    request, statements, pushed = BatchStatement(batch_type=BatchType.UNLOGGED), 0, 0
    for post_id in itertools.count(first_post):
        if rows <= 0:
            break
        author = rng.randrange(FLOOR_USERS)
        followers = rng.sample(range(FLOOR_USERS), min(per_post, rows))
        rows -= len(followers)
        own = [(post_stmt, (post_id, author, f"post {post_id} by user {author}", post_id)),
               (timeline_stmt, (author, post_id))]
        for stmt, params in [*own, *((push_stmt, (u, post_id, author, ttl)) for u in followers)]:
            request.add(stmt, params)
            statements, pushed = statements + 1, pushed + (stmt is push_stmt)
            if statements == batch:
                yield (request, None), pushed
                request, statements, pushed = BatchStatement(batch_type=BatchType.UNLOGGED), 0, 0
    if statements:
        yield (request, None), pushed


def tallied(requests: Iterable[tuple[Request, int]], tally: list[int]) -> Iterator[Request]:
    """The requests, adding the rows of each one handed on to `tally[0]`."""
    for request, rows in requests:
        tally[0] += rows
        yield request


def measured(run: Callable[[], int], rows: Callable[[int], int]) -> dict[str, Any]:
    """Wall and client CPU time (every thread of this process) of `run`, per row it wrote."""
    wall, cpu = time.perf_counter(), time.process_time()
    n = rows(run())
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"rows": n, "seconds": round(wall, 3), "rows_per_s": round(n / wall) if wall > 0 else 0,
            "cpu_ms_per_1000_rows": round(cpu * 1e6 / n, 1) if n else None}


def driver_limits(settings: Settings, rows: int = 20_000, seconds_cap: float = 60,
                  windows: Sequence[int] = (32, 64, 128), progress: Progress | None = None,
                  keyspace: str | None = None, reads: int = 10_000, read_window: int = 16) -> dict[str, Any]:
    """Rows/s of every insert shape x window x protocol, the bridge's single-row v4 figure, and a read loop.

    Each measurement stops issuing requests after `seconds_cap` (then its "rows" is below `rows`). A
    protocol that cannot connect, or a measurement that fails, is recorded as {"error": ...}.
    """
    ks = keyspace or f"{settings.keyspace}_driver"
    ttl, posts = settings.inbox_ttl_seconds, itertools.count(1_000)
    progress = progress or Progress(disable=True)
    task = progress.add_task("driver limits", total=len(SHAPES) * len(windows) * len(PROTOCOLS) + 4)

    def step(what: str) -> None:
        progress.update(task, advance=1, description=f"driver: {what}")

    sessions: dict[int, tuple[Cluster, Session, PreparedStatement]] = {}
    failures: dict[int, str] = {}
    admin_cluster, admin = connect(settings, 4)
    try:
        drop_keyspace(admin, ks)
        admin.execute(f"CREATE KEYSPACE {ks} WITH replication = {settings.keyspace_replication}", timeout=60)
        for cql in (INBOX_CQL, POSTS_CQL, TIMELINE_CQL):
            admin.execute(cql.format(ks=ks), timeout=60)
        for protocol in PROTOCOLS:
            try:
                cluster, session = connect(settings, protocol)
                sessions[protocol] = (cluster, session, session.prepare(PUSH_CQL.format(ks=ks)))
            except Exception as exc:  # e.g. a server without v5: record it, measure the rest
                failures[protocol] = f"{type(exc).__name__}: {exc}"

        def insert(protocol: int, size: int, window: int) -> dict[str, Any]:
            if protocol in failures:
                return {"error": failures[protocol]}
            _, session, stmt = sessions[protocol]
            try:  # warm up this shape (a few hundred rows, at least ten requests), then time it
                windowed(session, pushes(stmt, size, max(500, 10 * size), next(posts), ttl), window)
                post, deadline = next(posts), time.perf_counter() + seconds_cap
                return measured(lambda: windowed(session, until(deadline, pushes(stmt, size, rows, post, ttl)), window),
                                lambda sent: min(sent * size, rows))
            except Exception as exc:
                return {"error": f"{type(exc).__name__}: {exc}"}

        inserts = []
        # Protocols interleaved, so both see the same background load of a shared machine.
        for (shape, size), window in itertools.product(SHAPES, windows):
            for protocol in PROTOCOLS:
                entry: dict[str, Any] = {"shape": shape, "protocol": protocol, "window": window, "batch": size}
                entry.update(insert(protocol, size, window))
                inserts.append(entry)
                step(f"{shape} v{protocol} window {window}")
        successes = [e for e in inserts if "error" not in e]
        result: dict[str, Any] = {"inserts": inserts,
                                  "best_insert": max(successes, key=lambda e: e["rows_per_s"]) if successes else None}
        result["post_rows"] = post_rows(settings, sessions, failures, ks, rows, seconds_cap, posts)
        step("posts with their own rows")
        result["bridge_single_v4"] = bridge(settings, admin, ks, rows, seconds_cap, next(posts), next(posts))
        step("asyncio bridge")
        result["reads"] = read_loop(admin, ks, reads, read_window, ttl, TUPLES)
        step("reads, plain tuples")
        # The driver's default row factory builds a namedtuple class per response (~60 us); our store now
        # caches the class (fanout/adapters/cassandra/session.py cached_named_tuple_factory), so this shows what
        # that saved.
        result["reads_named_tuple"] = read_loop(admin, ks, reads, read_window, ttl, EXEC_PROFILE_DEFAULT)
        step("reads, named tuples")
        return result
    finally:
        for cluster, _, _ in sessions.values():
            cluster.shutdown()
        try:
            drop_keyspace(admin, ks)
        finally:
            admin_cluster.shutdown()


def post_rows(settings: Settings, sessions: dict[int, tuple[Cluster, Session, PreparedStatement]],
              failures: dict[int, str], ks: str, rows: int, seconds_cap: float,
              post_ids: Iterator[int]) -> list[dict[str, Any]]:
    """The floor loops (module docstring): protocol v4, the pipeline's batch size and window, each of
    ROWS_PER_POST, timed like the inserts."""
    entries = []
    for per_post in ROWS_PER_POST:
        entry: dict[str, Any] = {"shape": f"posts with {per_post} inbox rows each", "rows_per_post": per_post,
                                 "protocol": 4, "window": settings.write_window, "batch": settings.inbox_batch_size}
        if 4 in failures:
            entry["error"] = failures[4]
        else:
            _, session, push = sessions[4]
            # Post ids far apart, so that no two loops write the same post.
            entry.update(_post_rows(settings, session, ks, push, per_post, rows, seconds_cap,
                                    next(post_ids) * 1_000_000, next(post_ids) * 1_000_000))
        entries.append(entry)
    return entries


def _post_rows(settings: Settings, session: Session, ks: str, push: PreparedStatement, per_post: int, rows: int,
               seconds_cap: float, warm_post: int, first_post: int) -> dict[str, Any]:
    batch, window, ttl = max(1, settings.inbox_batch_size), settings.write_window, settings.inbox_ttl_seconds
    try:
        post_stmt = session.prepare(POST_CQL.format(ks=ks))
        timeline_stmt = session.prepare(TIMELINE_ENTRY_CQL.format(ks=ks))
        windowed(session, tallied(posts_with_rows(post_stmt, timeline_stmt, push, per_post, max(500, 10 * batch),
                                                  warm_post, ttl, batch), [0]), window)
        deadline, tally = time.perf_counter() + seconds_cap, [0]
        requests = until(deadline, posts_with_rows(post_stmt, timeline_stmt, push, per_post, rows, first_post, ttl,
                                                   batch))
        return measured(lambda: windowed(session, tallied(requests, tally), window), lambda sent: tally[0])
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def bridge(settings: Settings, session: Session, ks: str, rows: int, seconds_cap: float, warm_post: int,
           post: int) -> dict[str, Any]:
    """Single-row inserts through `Cassandra.run_window` (retries and all), window = settings.write_window."""
    entry: dict[str, Any] = {"shape": "single", "protocol": 4, "window": settings.write_window, "batch": 1}
    try:
        stmt = session.prepare(PUSH_CQL.format(ks=ks))
        ttl, db = settings.inbox_ttl_seconds, Cassandra(session, settings, Metrics())

        async def fan_out(requests: Iterable[Request]) -> int:
            return await db.run_window(requests, settings.write_window)

        asyncio.run(fan_out(pushes(stmt, 1, 500, warm_post, ttl)))
        deadline = time.perf_counter() + seconds_cap
        entry.update(measured(lambda: asyncio.run(fan_out(until(deadline, pushes(stmt, 1, rows, post, ttl)))),
                              lambda sent: sent))
    except Exception as exc:
        entry["error"] = f"{type(exc).__name__}: {exc}"
    return entry


def read_loop(session: Session, ks: str, reads: int, window: int, ttl: int, profile: object,
              inbox_rows: int = 1_000, page: int = 20) -> dict[str, Any]:
    """`reads` pages of one user's inbox (random keyset cursors, always a full page), `window` in flight."""
    entry: dict[str, Any] = {"protocol": 4, "window": window, "page": page, "inbox_rows": inbox_rows,
                             "row_factory": session.get_execution_profile(profile).row_factory.__name__}
    try:
        push = session.prepare(PUSH_CQL.format(ks=ks))
        windowed(session, ((push, (READER, p, AUTHOR, ttl)) for p in range(1, inbox_rows + 1)), 64)
        select = session.prepare(PAGE_CQL.format(ks=ks))
        rng = random.Random(1)

        def pages(n: int) -> Iterator[Request]:
            return ((select, (READER, rng.randint(page + 1, inbox_rows + 1), page)) for _ in range(n))

        windowed(session, pages(min(reads, 300)), window, profile=profile)
        latencies: list[float] = []
        wall, cpu = time.perf_counter(), time.process_time()
        n = windowed(session, pages(reads), window, latencies, profile)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        ms = sorted(t * 1000 for t in latencies) or [0.0]
        entry.update(reads=n, seconds=round(wall, 3), reads_per_s=round(n / wall) if wall > 0 else 0,
                     cpu_ms_per_1000_reads=round(cpu * 1e6 / n, 1) if n else None,
                     p50_ms=round(percentile(ms, 0.5), 2), p99_ms=round(percentile(ms, 0.99), 2))
    except Exception as exc:
        entry["error"] = f"{type(exc).__name__}: {exc}"
    return entry


def table(result: dict[str, Any]) -> Table:
    t = Table("shape", "protocol", "window", "rows/s", "CPU ms / 1000 rows", "wall s", title="bare cassandra-driver")
    best = result["best_insert"]
    bridge = {**result["bridge_single_v4"], "shape": "single via asyncio bridge"}
    for e in [*result["inserts"], *result.get("post_rows", []), bridge]:
        if "error" in e:
            t.add_row(e["shape"], f"v{e['protocol']}", str(e["window"]), f"[red]{e['error'][:60]}[/red]", "", "")
        else:
            mark = " *" if e is best else ""
            t.add_row(e["shape"], f"v{e['protocol']}", str(e["window"]), f"{e['rows_per_s']:,}{mark}",
                      str(e["cpu_ms_per_1000_rows"]), str(e["seconds"]))
    reads = [result["reads"], result["reads_named_tuple"]]
    t.caption = "\n".join(
        f"reads ({r['row_factory']}): {r['error']}" if "error" in r else
        f"reads of a {r['page']}-row inbox page, v4, {r['window']} in flight, {r['row_factory']}: "
        f"{r['reads_per_s']:,}/s, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, "
        f"{r['cpu_ms_per_1000_reads']} CPU ms / 1000 reads" for r in reads)
    return t


def main() -> None:
    console = Console()
    with Progress(console=console, transient=True) as progress:
        result = driver_limits(on_stack(Settings.load()), progress=progress)
    console.print(table(result))


if __name__ == "__main__":
    main()
