"""`fanout demo`: the hybrid pipeline on a generated social graph, on the running local stack.

Starts a worker, the ingest and the read service; seeds a power-law graph with celebrities; publishes
posts (some through the ingest HTTP API); waits until fan-out is done; prints a few merged feeds and the
inbox writes the hybrid saved against pushing everything. Stops the processes it started, not the stack.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path

import httpx
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bench.driver import drop_keyspace
from bench.workload import Workload, build_workload, expected_celebrities, expected_feeds, power_law_graph
from deploy import credentials
from deploy.processes import ProcessGroup
from fanout.adapters.cassandra import migrate
from fanout.adapters.cassandra.session import connect
from fanout.api.auth import Tokens
from fanout.core.clock import wall_ms
from fanout.core.events import Event, Followed, UserSeen
from fanout.lag import wait_until_drained
from fanout.settings import Settings
from fanout.write.producer import EventProducer, ensure_topics

console = Console()
DAY_MS = 86_400_000


def progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console)


def publish_all(producer: EventProducer, events: Sequence[Event], what: str) -> None:
    with progress() as bar:
        task = bar.add_task(f"publishing {what}", total=len(events))
        futures = []
        for e in events:
            futures.append(producer.send(e))
            if len(futures) >= 2000:
                for f in futures:
                    f.result(60)
                bar.advance(task, len(futures))
                futures = []
        for f in futures:
            f.result(60)
        bar.advance(task, len(futures))


def wait_processed(settings: Settings, processes: ProcessGroup, what: str, timeout: float = 600) -> float:
    """Wait until the worker group has no lag, with a progress bar; returns seconds waited."""
    with progress() as bar:
        task = bar.add_task(f"fan-out of {what}", total=None)
        most = 1

        def show(lag: int) -> None:
            nonlocal most
            processes.check_alive()
            most = max(most, lag)
            bar.update(task, total=most, completed=most - lag)

        return wait_until_drained(settings, timeout=timeout, on_lag=show)


DEMO = "demo-"  # every demo's topics and consumer groups start with it, its keyspace with "demo_"


def demos_on_stack(s: Settings) -> tuple[list[str], list[str], list[str]]:
    """The keyspaces, topics and consumer groups demos made on this stack (each run has its own, so that a run
    never reads another's events)."""
    cluster, session = connect(s)
    try:
        rows = session.execute("SELECT keyspace_name FROM system_schema.keyspaces", timeout=60)
        keyspaces = sorted(r.keyspace_name for r in rows if r.keyspace_name.startswith(DEMO.replace("-", "_")))
    finally:
        cluster.shutdown()
    admin = AdminClient(s.kafka_config("admin"))
    topics = sorted(t for t in admin.list_topics(timeout=30).topics if t.startswith(DEMO))
    groups = sorted(g.group_id for g in admin.list_consumer_groups().result(30).valid if g.group_id.startswith(DEMO))
    return keyspaces, topics, groups


def drop_previous_demos(s: Settings) -> tuple[list[str], list[str]]:
    """Drop what earlier demos left on the stack: their keyspaces, topics and consumer groups. The keyspaces and
    topics dropped."""
    keyspaces, topics, groups = demos_on_stack(s)
    cluster, session = connect(s)
    try:
        for keyspace in keyspaces:
            drop_keyspace(session, keyspace)
    finally:
        cluster.shutdown()
    admin = AdminClient(s.kafka_config("admin"))
    if topics:
        for future in admin.delete_topics(topics, operation_timeout=30).values():
            future.result(30)
    if groups:
        for future in admin.delete_consumer_groups(groups, request_timeout=30).values():
            try:
                future.result(30)
            except KafkaException as exc:
                # Kafka drops an empty group by itself once the topics holding its offsets are deleted, so a
                # group listed above may be gone by now: that is the end wanted.
                if exc.args[0].code() != KafkaError.GROUP_ID_NOT_FOUND:
                    raise
    return keyspaces, topics


def outside_clients(s: Settings) -> list[str]:
    """Commands that look at a demo's data with cqlsh and kcat, logged in with the read-only Cassandra role and
    the Kafka admin from the stack's credentials file: the file is read by the shell, never printed."""
    creds = credentials.path(s)
    kafka = f"-b {s.kafka_bootstrap}"
    cql = f"{s.cassandra_contact_points[0]} {s.cassandra_port}"
    if credentials.read(s):
        kafka += (f" -X security.protocol=SASL_PLAINTEXT -X sasl.mechanisms={s.kafka_sasl_mechanism}"
                  ' -X sasl.username="$FANOUT_KAFKA_ADMIN_USERNAME" -X sasl.password="$FANOUT_KAFKA_ADMIN_PASSWORD"')
        cql = f'-u "$FANOUT_CASSANDRA_READER_USERNAME" -p "$FANOUT_CASSANDRA_READER_PASSWORD" {cql}'
    return [
        *([f"set -a; . {creds}; set +a   # the stack's logins, into this shell"] if credentials.read(s) else []),
        f'.venv/bin/cqlsh {cql} -e "SELECT * FROM {s.keyspace}.inbox LIMIT 5"',
        f"kcat {kafka} -C -t {s.events_topic} -o beginning -c 5 -e",
    ]


def run(base: Settings, users: int, posts: int, threshold: int, seed: int, log_dir: Path) -> None:
    run_id = time.strftime("%Y%m%d%H%M%S")
    s = base.isolated(f"{DEMO}{run_id}", celebrity_threshold=threshold, chunk_size=min(base.chunk_size, 500))
    console.rule("[bold]Fanout demo: hybrid fan-out on real Kafka + Cassandra")
    with console.status("dropping what earlier demos left"):
        keyspaces, topics = drop_previous_demos(s)
    if keyspaces or topics:
        console.print(f"dropped the earlier demos' keyspaces ({', '.join(keyspaces) or 'none'}) "
                      f"and {len(topics)} topics")
    console.print(f"keyspace [bold]{s.keyspace}[/], topics [bold]{s.app_id}.*[/], "
                  f"celebrity threshold [bold]{threshold}[/] followers, chunk size {s.chunk_size}")
    ensure_topics(s)
    migrate(s)
    graph = power_law_graph(users, seed=seed, min_followers=2, celebrities=2, celebrity_followers=threshold * 2)
    now = int(time.time() * 1000)
    workload = build_workload(graph, n_posts=posts, seed=seed, delete_share=0.02, unfollow_share=0.02,
                              start_ms=now - 3_600_000)
    celebs = expected_celebrities(workload, threshold, s.celebrity_demote_ratio)
    # 40% of users last read their feed 10 days ago: no pushes for them until they come back.
    inactive = set(random.Random(seed).sample(graph.users, int(len(graph.users) * 0.4)))
    away = [UserSeen(event_time=now - 10 * DAY_MS, user_id=u) for u in sorted(inactive)]
    console.print(f"graph: {users} users, {sum(map(len, graph.followers.values()))} follows, "
                  f"{len(celebs)} celebrities (>= {threshold} followers), {len(inactive)} inactive users, "
                  f"{posts} posts")

    with ProcessGroup(s, log_dir / run_id) as processes:
        with console.status("starting worker, read service and ingest service"):
            processes.start("worker", "read-api", "ingest-api")
        console.print(f"read API {processes.url('read-api')}, ingest API {processes.url('ingest-api')}, "
                      f"worker metrics {processes.url('worker')}/metrics; logs in {log_dir / run_id}")
        producer = EventProducer(s)
        try:
            publish_all(producer, workload.follows, "follows")
            # The last reads as the read service records them: its Kafka user, its topic.
            with closing(EventProducer(s, principal="reader")) as reads:
                publish_all(reads, away, "last reads")
            wait_processed(s, processes, "follows")
            # A few posts through the ingest HTTP API, as a client would send them; the rest in bulk.
            via_http = []
            # Each request carries a bearer token of its author (`fanout token USER_ID` mints one).
            tokens = Tokens(s)
            with httpx.Client(base_url=processes.url("ingest-api"), timeout=30) as http:
                for author in sorted(celebs)[:1] + [graph.users[0]]:
                    r = http.post("/v1/posts", json={"body": f"hello from {author} over HTTP"},
                                  headers=tokens.headers(author))
                    r.raise_for_status()
                    via_http.append((author, r.json()["post_id"]))
            started = time.monotonic()
            publish_all(producer, [*workload.posts, *workload.deletes], "posts and deletes")
            wait_processed(s, processes, "posts")
            elapsed = time.monotonic() - started
            show_feeds(processes, workload, celebs, inactive)
            show_savings(processes, workload, celebs, via_http, elapsed)
            show_returning_user(processes, workload, inactive)
            show_threshold_crossing(s, processes, producer, workload, celebs)
        finally:
            producer.close()
    console.print("demo processes stopped; the stack keeps running ([bold]make down[/] stops it)")
    console.print(f"This run's keyspace {s.keyspace} and topics {s.app_id}.* stay until the next demo drops them. "
                  "Look at them from the repository's root:")
    for command in outside_clients(s):
        console.print(f"  {command}", markup=False, highlight=False, soft_wrap=True)


def show_feeds(processes: ProcessGroup, workload: Workload, celebs: set[int], inactive: set[int]) -> None:
    following = workload.graph.following()
    users = [u for u in workload.graph.users if u not in inactive]
    feeds = expected_feeds(workload)
    # Readers worth looking at: the fullest feeds among users who follow 1, 2+ and no celebrities.
    def celebs_followed(u: int) -> int:
        return len(following.get(u, set()) & celebs)

    groups = [[u for u in users if celebs_followed(u) == 0 and following.get(u)],
              [u for u in users if celebs_followed(u) == 1], [u for u in users if celebs_followed(u) >= 2]]
    readers = [max(group, key=lambda u: len(feeds[u])) for group in groups if group]
    tokens = Tokens(processes.settings)
    with httpx.Client(base_url=processes.url("read-api"), timeout=30) as http:
        for reader in readers:
            feed = http.get("/v1/feed", params={"limit": 6}, headers=tokens.headers(reader)).raise_for_status().json()
            follows = following.get(reader, set())
            table = Table(title=f"feed of user {reader}: follows {len(follows)} accounts, "
                                f"{len(follows & celebs)} of them celebrities", title_justify="left")
            table.add_column("post id")
            table.add_column("author")
            table.add_column("delivered by")
            table.add_column("body")
            for item in feed["items"]:
                pulled = item["author_id"] in celebs
                table.add_row(str(item["post_id"]), str(item["author_id"]),
                              "pull (celebrity timeline)" if pulled else "push (inbox)", item["body"])
            console.print(table)
            console.print(f"  next_cursor: {feed['next_cursor']}")


def show_savings(processes: ProcessGroup, workload: Workload, celebs: set[int], via_http: list[tuple[int, int]],
                 elapsed: float) -> None:
    graph = workload.graph
    authors = [p.author_id for p in workload.posts] + [a for a, _ in via_http]
    push_everything = sum(graph.follower_count(a) for a in authors)
    skipped = processes.metric("fanout_inactive_followers_skipped_total")
    hybrid = processes.metric("fanout_inbox_rows_written_total")
    table = Table(title="inbox writes: hybrid against pushing everything", title_justify="left")
    table.add_column("strategy")
    table.add_column("inbox rows", justify="right")
    table.add_column("saved", justify="right")

    def saved(rows: float) -> str:
        return f"{1 - rows / max(push_everything, 1):.0%}"

    table.add_row("push everything (every author, every follower)", f"{push_everything:,}", "-")
    table.add_row("pull celebrities at read", f"{hybrid + skipped:,.0f}", saved(hybrid + skipped))
    table.add_row("... and skip followers inactive for 7 days (hybrid)", f"{hybrid:,.0f}", saved(hybrid))
    console.print(table)
    console.print(f"skipping inactive followers saved {skipped:,.0f} inbox writes "
                  f"({skipped / max(hybrid + skipped, 1):.0%} of the pushes)")
    push = processes.metric('fanout_posts_total{tier="push"}')
    pull = processes.metric('fanout_posts_total{tier="pull"}')
    console.print(f"posts by tier: push {push:.0f}, pull {pull:.0f}; "
                  f"{len(workload.posts)} posts fanned out in {elapsed:.1f}s "
                  f"({hybrid / max(elapsed, 1e-9):,.0f} inbox rows/s)")


def show_returning_user(processes: ProcessGroup, workload: Workload, inactive: set[int]) -> None:
    """An inactive user comes back: answered at once by a pull, inbox rebuilt in the background."""
    following = workload.graph.following()
    user = max(inactive, key=lambda u: len(following.get(u, ())))
    feed_url = "/v1/feed"
    with httpx.Client(base_url=processes.url("read-api"), headers=Tokens(processes.settings).headers(user),
                      timeout=30) as http:
        started = time.perf_counter()
        first = http.get(feed_url, params={"limit": 5}).raise_for_status().json()
        first_ms = (time.perf_counter() - started) * 1000
        while http.get(feed_url, params={"limit": 5}).json()["regenerating"]:
            processes.check_alive()
            if time.perf_counter() - started > 120:
                raise TimeoutError(f"user {user}'s inbox was not rebuilt within 120 s")
            time.sleep(0.05)
        rebuilt = time.perf_counter() - started
        after = http.get(feed_url, params={"limit": 5}).json()
    console.rule(f"user {user} comes back after 10 days (follows {len(following.get(user, ()))} accounts)")
    console.print(f"first read: {len(first['items'])} items in {first_ms:.0f} ms, "
                  f"regenerating={first['regenerating']} (a read-time pull over the accounts they follow)")
    same = [i["post_id"] for i in after["items"]] == [i["post_id"] for i in first["items"]]
    console.print(f"inbox rebuilt {rebuilt:.2f} s after that read; now regenerating={after['regenerating']}, "
                  f"same first items from the inbox: {same}")


def show_threshold_crossing(s: Settings, processes: ProcessGroup, producer: EventProducer, workload: Workload,
                            celebs: set[int]) -> None:
    """A normal author gains followers past the threshold: its next post is pulled, not pushed."""
    graph = workload.graph
    author = max((a for a in graph.users if a not in celebs), key=graph.follower_count)
    missing = s.celebrity_threshold - graph.follower_count(author)
    before = processes.metric('fanout_tier_switches_total{direction="to_pull"}')
    new_fans = [Followed(event_time=wall_ms(), follower_id=10_000_000 + i, followee_id=author)
                for i in range(missing)]
    publish_all(producer, new_fans, f"{missing} new followers of author {author}")
    wait_processed(s, processes, "the new follows")
    post = producer.publish_post(author, "my first post as a celebrity")
    wait_processed(s, processes, "the post")
    reader = next(iter(graph.followers[author]))
    with httpx.Client(base_url=processes.url("read-api"), headers=Tokens(s).headers(reader), timeout=30) as http:
        head = http.get("/v1/feed", params={"limit": 1}).json()["items"][0]
    console.rule(f"author {author} crosses the threshold ({graph.follower_count(author)} -> "
                 f"{s.celebrity_threshold} followers)")
    switched = processes.metric('fanout_tier_switches_total{direction="to_pull"}') - before
    console.print(f"tier switches to pull: {switched:.0f}; its new post {post.post_id} heads follower {reader}'s "
                  f"feed: {head['post_id'] == post.post_id} (pulled from the author's timeline, written to no inbox)")
