"""The hybrid pipeline end to end on the real stack: events -> Kafka -> worker -> Cassandra -> read API.

One module-scoped workload on a generated power-law graph with celebrities, processed by real `fanout`
processes; each test checks one property of the result against the oracle computed from the events.
The threshold and chunk size are small so that a graph of a few hundred users has celebrities and
chunked fan-outs.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from dashboard_queries import dashboard_queries
from live import Deployment, deploy
from ports import free_port

from bench.workload import Workload, build_workload, expected_celebrities, expected_feeds, power_law_graph
from deploy.processes import ProcessGroup
from fanout.core.clock import wall_ms
from fanout.core.codec import encode
from fanout.core.events import Followed, PostCreated, author_key
from fanout.core.ids import smallest_id_at
from fanout.settings import Settings

pytestmark = pytest.mark.e2e

THRESHOLD = 40
CHUNK = 16


@dataclass
class Seeded(Deployment):
    """The deployment after the module's workload went through it."""

    workload: Workload

    def explain(self, user: int, got: list[int], want: list[int]) -> dict[str, object]:
        """What differs in one user's feed, with the facts needed to tell why."""
        session = self.cluster.connect(self.settings.keyspace)
        authors = {p.post_id: p.author_id for p in self.workload.posts}
        missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
        celebs = set(self.celebrities(user))
        facts = {}
        for pid in missing + extra:
            a = authors.get(pid)
            stats = session.execute("SELECT follower_count, is_celebrity FROM followers_by_author "
                                    "WHERE author_id=%s LIMIT 1", (a,)).one()
            inbox = session.execute("SELECT post_id FROM inbox WHERE user_id=%s AND post_id=%s", (user, pid)).one()
            post = session.execute("SELECT tier, deleted FROM posts WHERE post_id=%s", (pid,)).one()
            facts[pid] = {"author": a, "stats": tuple(stats) if stats else None, "in_inbox": inbox is not None,
                          "post": tuple(post) if post else None, "author_in_user_celebs": a in celebs,
                          "oracle_celebrity": a in celebrities(self.workload)}
        return {"missing": missing, "extra": extra, "order_only": not missing and not extra, "facts": facts}


@pytest.fixture(scope="module")
def deployment(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    with deploy(stack, tmp_path_factory.mktemp("logs"), "pipe", celebrity_threshold=THRESHOLD,
                chunk_size=CHUNK) as live:
        graph = power_law_graph(300, seed=7, min_followers=2, celebrities=3, celebrity_followers=120)
        workload = build_workload(graph, n_posts=400, seed=7, delete_share=0.05, unfollow_share=0.05)
        d = Seeded(**{f.name: getattr(live, f.name) for f in dataclasses.fields(live)}, workload=workload)
        # Follows first (so every author's tier is settled), then posts and deletes.
        d.publish(workload.follows)
        d.drain()
        d.publish([*workload.posts, *workload.deletes])
        d.drain()
        yield d


def celebrities(workload: Workload) -> set[int]:
    return expected_celebrities(workload, THRESHOLD, 0.8)


def test_the_graph_has_celebrities_and_chunked_fanouts(deployment: Seeded) -> None:
    graph = deployment.workload.graph
    assert len(celebrities(deployment.workload)) >= 3
    posting = {p.author_id for p in deployment.workload.posts}
    assert any(CHUNK < graph.follower_count(a) < THRESHOLD for a in posting), "no post needs chunk tasks"
    assert deployment.worker_metric("fanout_chunks_processed_total") > 0


def test_every_feed_paged_over_http_equals_the_oracle(deployment: Seeded) -> None:
    expected = expected_feeds(deployment.workload)
    assert sum(len(v) for v in expected.values()) > 1000
    got = {u: deployment.feed(u) for u in expected}
    mismatches = {u: deployment.explain(u, got[u], want) for u, want in expected.items() if got[u] != want}
    assert not mismatches, f"{len(mismatches)} feeds differ from the oracle: {dict(list(mismatches.items())[:3])}"


def test_celebrity_posts_are_never_in_inboxes(deployment: Seeded) -> None:
    celebs = celebrities(deployment.workload)
    rows = deployment.inbox_rows()
    assert rows
    assert not [r for r in rows if r[2] in celebs]


def test_inbox_rows_written_equal_normal_authors_follower_counts(deployment: Seeded) -> None:
    graph = deployment.workload.graph
    celebs = celebrities(deployment.workload)
    expected = sum(graph.follower_count(p.author_id) for p in deployment.workload.posts if p.author_id not in celebs)
    assert deployment.worker_metric("fanout_inbox_rows_written_total") == expected
    assert len(deployment.inbox_rows()) == expected


def test_feed_api_rejects_bad_requests_with_messages(deployment: Seeded) -> None:
    with deployment.http("read-api", user=1) as http:
        for params, needle in [({"limit": 0}, "limit"), ({"limit": 101}, "limit"), ({"limit": "x"}, "limit"),
                               ({"cursor": "abc"}, "cursor"), ({"cursor": "-5"}, "cursor")]:
            response = http.get("/v1/users/1/feed", params=params)
            assert response.status_code == 422, params
            assert needle in response.json()["error"]
        assert http.get("/v1/users/0/feed").status_code == 422
        assert http.get("/v1/users/abc/feed").status_code == 422
        assert http.get("/openapi.json").json()["paths"]["/v1/users/{user_id}/feed"]
        assert http.get("/healthz").json() == {"status": "ok"}


def test_cursor_is_stable_while_new_posts_arrive(deployment: Seeded) -> None:
    graph = deployment.workload.graph
    reader = max(graph.users, key=lambda u: len(expected_feeds(deployment.workload)[u]))
    before = expected_feeds(deployment.workload)[reader]
    author = next(iter(graph.following()[reader]))
    with deployment.http("read-api", user=reader) as http:
        first = http.get(f"/v1/users/{reader}/feed", params={"limit": 5}).json()
        new = deployment.producer.publish_post(author, "arrives between two pages")
        deployment.drain()
        rest: list[int] = [i["post_id"] for i in first["items"]]
        cursor = first["next_cursor"]
        while cursor:
            page = http.get(f"/v1/users/{reader}/feed", params={"limit": 5, "cursor": cursor}).json()
            rest.extend(i["post_id"] for i in page["items"])
            cursor = page["next_cursor"]
        head = http.get(f"/v1/users/{reader}/feed", params={"limit": 1}).json()["items"][0]["post_id"]
    assert rest == before  # paging from the old cursor neither repeats nor skips
    assert head == new.post_id  # while a fresh read shows the new post first
    deployment.workload.posts.append(new)


def test_ingest_api_accepts_only_after_kafka_and_rejects_invalid_input(deployment: Seeded) -> None:
    graph = deployment.workload.graph
    author = max((a for a in graph.users if a not in celebrities(deployment.workload)), key=graph.follower_count)
    follower = next(iter(graph.followers[author]))
    with deployment.http("ingest-api", user=author) as http:
        accepted = http.post("/v1/posts", json={"author_id": author, "body": "via HTTP"})
        assert accepted.status_code == 202
        post_id = accepted.json()["post_id"]
        for bad in [{"author_id": author}, {"author_id": -1, "body": "x"}, {"author_id": author, "body": ""},
                    {"author_id": author, "body": "x" * 5001}, {"follower_id": 1}]:
            response = http.post("/v1/posts", json=bad)
            assert response.status_code == 422 and response.json()["error"], bad
        bad_json = http.post("/v1/posts", content=b"{not json", headers={"content-type": "application/json"})
        assert bad_json.status_code == 422 and bad_json.json()["error"]
        assert http.post("/v1/follows", json={"follower_id": author, "followee_id": author}).status_code == 422
        deployment.drain()
        assert deployment.feed(follower)[0] == post_id
        assert http.delete(f"/v1/posts/{post_id}", params={"author_id": author}).status_code == 202
        deployment.drain()
        assert post_id not in deployment.feed(follower)


def test_ingest_api_answers_503_when_kafka_cannot_take_the_event(deployment: Seeded, tmp_path: Path) -> None:
    s = Settings.load(**{**_fields(deployment.settings), "kafka_port": free_port(), "publish_timeout_ms": 1500,
                         "ingest_api_port": free_port()})
    with ProcessGroup(s, tmp_path).start("ingest-api") as group:
        response = httpx.post(group.url("ingest-api") + "/v1/posts", json={"author_id": 1, "body": "x"}, timeout=30,
                              headers=deployment.tokens.headers(1))
    assert response.status_code == 503
    assert "retry" in response.json()["error"]


def test_malformed_events_are_dead_lettered_and_the_next_event_is_processed(deployment: Seeded) -> None:
    s = deployment.settings
    graph = deployment.workload.graph
    author = min((a for a in graph.users if a not in celebrities(deployment.workload) and graph.followers[a]),
                 key=graph.follower_count)
    follower = next(iter(graph.followers[author]))
    valid = deployment.producer.new_post(author, "after the bad ones")
    taken = next(p for p in deployment.workload.posts if p.author_id != author)
    raw = Producer({**s.kafka_config(), "partitioner": "murmur2_random"})  # the services' user may write events
    key = author_key(author)
    bad = [
        (b"{not json", "bad_json"),
        (orjson.dumps({"type": "PostCreated", "version": 1, "event_time": 1, "post_id": 1}), "schema"),
        (orjson.dumps({"type": "Reposted", "version": 1}), "unknown_type"),
        (b'{"type": "PostCreated", "body": "' + b"x" * (s.max_event_bytes + 1) + b'"}', "oversized"),
        (encode(deployment.producer.new_post(author + 1, "under someone else's key")), "wrong_key"),
        # Valid by the schema, refused by the worker (fanout/core/codec.py check_event): a follow dated an hour
        # ahead could never be undone, a post dated a day ahead would top feeds for a day.
        (encode(Followed(event_time=wall_ms() + 3_600_000, follower_id=follower, followee_id=author)),
         "future_event_time"),
        (encode(PostCreated(event_time=wall_ms(), post_id=smallest_id_at(wall_ms() + 86_400_000), author_id=author,
                            body="from tomorrow")), "future_event_time"),
        (encode(Followed(event_time=wall_ms(), follower_id=2**60, followee_id=author)), "id_range"),
        # Found by the handler, not the decoder: its dead letter may come before or after the others'.
        (encode(PostCreated(event_time=taken.event_time, post_id=taken.post_id, author_id=author,
                            body="over someone else's post")), "post_id_taken"),
    ]
    for value, _ in bad:
        raw.produce(s.events_topic, key=key, value=value)
    raw.produce(s.events_topic, key=key, value=encode(valid))
    assert raw.flush(30) == 0
    deployment.drain()
    assert deployment.feed(follower)[0] == valid.post_id
    deployment.workload.posts.append(valid)

    consumer = Consumer({**s.kafka_config("admin"), "group.id": f"{s.app_id}-dlq-check",
                         "auto.offset.reset": "earliest"})
    consumer.assign([TopicPartition(s.dead_letter_topic, 0, 0)])
    reasons = []
    deadline = time.monotonic() + 30
    while len(reasons) < len(bad) and time.monotonic() < deadline:
        msg = consumer.poll(1.0)
        if msg is not None and not msg.error():
            reasons.append(dict(msg.headers() or [])["reason"].decode())
    consumer.close()
    assert sorted(reasons) == sorted(reason for _, reason in bad)
    [row] = deployment.cql("SELECT author_id, body FROM posts WHERE post_id = %s", taken.post_id)
    assert (row.author_id, row.body) == (taken.author_id, taken.body)  # not written over


def test_replaying_every_event_changes_no_feed(deployment: Seeded) -> None:
    expected = {u: deployment.feed(u) for u in deployment.workload.graph.users}
    rows = len(deployment.inbox_rows())
    deployment.publish(deployment.workload.events)
    deployment.drain()
    assert {u: deployment.feed(u) for u in deployment.workload.graph.users} == expected
    assert len(deployment.inbox_rows()) == rows


def test_every_dashboard_query_returns_data_from_prometheus(deployment: Seeded) -> None:
    # The processes run on the ports the local Prometheus scrapes; give it a few scrapes.
    prometheus = f"http://{deployment.settings.client_host}:{deployment.settings.stack.prometheus_port}"
    for user in deployment.workload.graph.users[:20]:
        deployment.feed(user)
    empty: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for user in deployment.workload.graph.users[:5]:
            deployment.feed(user)
        empty = [q for q in dashboard_queries()
                 if not httpx.get(f"{prometheus}/api/v1/query", params={"query": q}).json()["data"]["result"]]
        if not empty:
            break
        time.sleep(2)
    assert not empty, f"dashboard queries without data: {empty}"


def _fields(s: Settings) -> dict[str, object]:
    import dataclasses

    return {f.name: getattr(s, f.name) for f in dataclasses.fields(s)}
