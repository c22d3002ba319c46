"""The compose deployment end to end, through the ports it publishes on 127.0.0.1 only: users follow and
post through the ingest API with their own tokens, the worker containers fan out from Kafka into
Cassandra, and every feed read through the read API equals the oracle; cqlsh inside the Cassandra
container (an outside client) counts the same inbox rows."""

from __future__ import annotations

import random
import time
from collections import defaultdict

import httpx
import pytest
from cassandra import Unauthorized
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
from cassandra.policies import WhiteListRoundRobinPolicy
from conftest import ComposeDeployment, feed

pytestmark = pytest.mark.docker

# Run inside a container with its own environment: produce one event to each topic as the container's
# Kafka user, and print what Kafka answered.
PRODUCE_AS = """
import os, sys
from confluent_kafka import Producer
from fanout.core.codec import encode
from fanout.core.events import PostCreated, UserSeen
from fanout.core.ids import MAX_NODE, PostIdGenerator, millis_of
from fanout.settings import Settings
process, principal = sys.argv[1:]
s = Settings.load().as_process(process)
post_id = PostIdGenerator(MAX_NODE).next_id()  # by an author nobody follows: no feed changes
post = PostCreated(event_time=millis_of(post_id), post_id=post_id, author_id=999_999_999, body="x")
for topic, event in ((s.events_topic, post), (s.reads_topic, UserSeen(event_time=millis_of(post_id), user_id=1))):
    answers = []
    producer = Producer({**s.kafka_config(principal), "acks": "all", "message.timeout.ms": 15000})
    producer.produce(topic, key=event.key, value=encode(event), on_delivery=lambda err, msg: answers.append(err))
    producer.flush(30)
    print(topic.rsplit(".", 1)[1], answers[0].name() if answers and answers[0] else "OK")
print("services-password", "FANOUT_KAFKA_SASL_PASSWORD" in os.environ)
"""

USERS = range(1, 41)


def test_every_published_port_is_on_loopback_only(deployment: ComposeDeployment) -> None:
    ports = deployment.compose("ps", "--format", "{{.Name}} {{.Ports}}").stdout
    published = [p for line in ports.splitlines() for p in line.split(" ", 1)[1:] if "->" in p]
    assert published, ports
    for spec in ", ".join(published).split(", "):
        assert spec.startswith("127.0.0.1:"), spec


def test_the_apis_refuse_requests_without_a_valid_token(deployment: ComposeDeployment, http: httpx.Client) -> None:
    assert http.get(f"{deployment.url('read')}/v1/feed").status_code == 401
    assert http.post(f"{deployment.url('ingest')}/v1/posts", json={"body": "x"}).status_code == 401
    forged = {"Authorization": "Bearer " + deployment.tokens.headers(1)["Authorization"].split()[1][:-4] + "AAAA"}
    assert http.get(f"{deployment.url('read')}/v1/feed", headers=forged).status_code == 401


def test_the_page_writes_to_the_published_ingest_port(deployment: ComposeDeployment, http: httpx.Client) -> None:
    """The ports are published elsewhere than the containers' own: the page still learns the ingest API's
    published port, may connect there (CSP), and the ingest API lets the page's origin in (CORS)."""
    read, ingest = deployment.url("read"), deployment.url("ingest")
    port = ingest.rsplit(":", 1)[1]
    assert port != "8081" and not read.endswith(":8080"), "the test needs ports other than the containers' own"
    page = http.get(f"{read}/")
    assert page.status_code == 200
    assert f'<meta name="fanout-ingest-port" content="{port}">' in page.text
    assert f"connect-src 'self' {ingest} " in page.headers["content-security-policy"]
    preflight = http.options(f"{ingest}/v1/posts", headers={
        "Origin": read, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type,idempotency-key"})
    assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == read
    elsewhere = http.options(f"{ingest}/v1/posts", headers={"Origin": "http://127.0.0.1:8080",
                                                            "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in elsewhere.headers


def test_feeds_read_through_the_read_api_equal_the_oracle(deployment: ComposeDeployment, http: httpx.Client) -> None:
    rng = random.Random(24)
    ingest = deployment.url("ingest")
    following: dict[int, set[int]] = defaultdict(set)
    for user in USERS:
        for followee in rng.sample([u for u in USERS if u != user], 6):
            resp = http.post(f"{ingest}/v1/follows", json={"followee_id": followee},
                             headers=deployment.tokens.headers(user))
            assert resp.status_code == 202, resp.text
            following[user].add(followee)
    posts: dict[int, int] = {}  # post id -> author
    for author in rng.choices(list(USERS), k=120):
        resp = http.post(f"{ingest}/v1/posts", json={"body": f"a post by {author}"},
                         headers=deployment.tokens.headers(author))
        assert resp.status_code == 202, resp.text
        posts[resp.json()["post_id"]] = author
    deployment.drain(timeout=300)

    want = {user: sorted((p for p, a in posts.items() if a in following[user]), reverse=True) for user in USERS}
    deadline = time.monotonic() + 30  # the read service's caches have a stated staleness bound
    while (got := {user: feed(http, deployment, user) for user in USERS}) != want and time.monotonic() < deadline:
        time.sleep(1)
    differs = {user: {"missing": sorted(set(want[user]) - set(got[user])),
                      "extra": [(p, posts.get(p)) for p in sorted(set(got[user]) - set(want[user]))],
                      "order_only": set(got[user]) == set(want[user])}
               for user in USERS if got[user] != want[user]}
    assert not differs, differs

    # cqlsh, in the Cassandra container, as the admin: the inbox holds exactly the pushed rows.
    rows = sum(len(ids) for ids in want.values())
    s = deployment.settings
    users = ",".join(map(str, USERS))
    count = deployment.compose(
        "exec", "-T", "cassandra", "cqlsh", "-u", s.cassandra_admin_username, "-p", s.cassandra_admin_password,
        "--request-timeout=60", "-e",
        f"CONSISTENCY QUORUM; SELECT count(*) FROM {s.keyspace}.inbox WHERE user_id IN ({users}) AND post_id > 0;",
    ).stdout
    assert [int(line) for line in count.split() if line.isdigit()] == [rows], count


def test_the_read_services_role_reads_and_may_change_nothing(deployment: ComposeDeployment) -> None:
    """Least privilege: the read-api container's Cassandra role (from .env, as compose gives it) reads the
    feed tables, and may neither write a row nor drop a table."""
    s = deployment.settings
    reader = (s.cassandra_reader_username, s.cassandra_reader_password)
    profile = ExecutionProfile(load_balancing_policy=WhiteListRoundRobinPolicy(["127.0.0.1"]), request_timeout=30)
    cluster = Cluster(["127.0.0.1"], port=s.cassandra_port, protocol_version=4,
                      execution_profiles={EXEC_PROFILE_DEFAULT: profile}, auth_provider=PlainTextAuthProvider(*reader))
    try:
        session = cluster.connect()
        session.execute(f"SELECT post_id FROM {s.keyspace}.posts LIMIT 1")
        for cql in (f"INSERT INTO {s.keyspace}.author_timeline (author_id, post_id) VALUES (1, 1)",
                    f"DROP TABLE {s.keyspace}.inbox"):
            with pytest.raises(Unauthorized):
                session.execute(cql)
    finally:
        cluster.shutdown()


@pytest.mark.parametrize(("service", "process", "principal", "answers"), [
    ("read-api", "reader", "reader", {"author-events": "TOPIC_AUTHORIZATION_FAILED", "feed-reads": "OK",
                                      "services-password": "False"}),
    ("ingest-api", "ingest", "service", {"author-events": "OK", "feed-reads": "TOPIC_AUTHORIZATION_FAILED",
                                         "services-password": "True"}),
])
def test_only_the_ingest_api_may_write_author_events(deployment: ComposeDeployment, service: str, process: str,
                                                     principal: str, answers: dict[str, str]) -> None:
    """Least privilege in Kafka, from inside each API container with the user compose gives it: the read
    service may record feed reads and never publish a post as anyone; the ingest API the reverse."""
    out = deployment.compose("exec", "-T", service, "python3", "-c", PRODUCE_AS, process, principal).stdout
    assert dict(line.split(" ", 1) for line in out.strip().splitlines()) == answers, out
