"""Every authorization rule of the APIs, end to end on the real stack: who may read a feed, who may post,
delete, follow and unfollow as whom, deletes only by the author (also when forged past the API), the
Idempotency-Key across two ingest replicas, the limits, and the unauthenticated /metrics and /healthz."""

from __future__ import annotations

import dataclasses
import itertools
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import jwt
import pytest
from live import Deployment, deploy
from ports import free_port

from deploy.processes import ProcessGroup
from fanout.api.auth import local_secret, mint_token
from fanout.core.clock import wall_ms
from fanout.core.events import Followed, PostDeleted
from fanout.core.ids import MAX_USER_ID
from fanout.settings import Settings

pytestmark = pytest.mark.e2e

_ids = itertools.count(7_310_000_001)  # distinctive, so /metrics can be searched for them


def users(n: int) -> list[int]:
    return [next(_ids) for _ in range(n)]


@pytest.fixture(scope="module")
def live(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with deploy(stack, tmp_path_factory.mktemp("logs"), "sec", rate_limit_reads=Settings().rate_limit_reads) as d:
        yield d


def bad_tokens(s: Settings, user: int) -> dict[str, str]:
    secret = local_secret(s.jwt_secret_path)
    now = int(time.time())

    def signed(key: bytes | str = secret, **claims: object) -> str:
        base = {"sub": str(user), "iss": s.jwt_issuer, "aud": s.jwt_audience, "iat": now, "exp": now + 600}
        return jwt.encode({**base, **claims}, key, algorithm="HS256")

    return {"garbage": "not-a-token", "expired": mint_token(s, user, ttl_seconds=60, now=now - 3600),
            "another key": signed(b"x" * 64), "another issuer": signed(iss="evil"),
            "another audience": signed(aud="another-api"), "no expiry": signed(exp=None),
            # A subject in another spelling is another identity; 5,000 digits once answered 500.
            "zero-padded subject": signed(sub=f"0{user}"), "5,000-digit subject": signed(sub="9" * 5000)}


def assert_error(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]


def test_a_user_reads_only_their_own_feed_and_a_refused_read_writes_nothing(live: Deployment) -> None:
    reader, author = users(2)
    post = live.producer.publish_post(author, "for my follower only")
    live.publish([Followed(event_time=wall_ms(), follower_id=reader, followee_id=author)])
    live.drain()
    seen_before = live.worker_metric('fanout_events_consumed_total{type="UserSeen"}')
    with live.http("read-api") as anonymous:
        for path in ("/v1/feed", f"/v1/users/{reader}/feed"):
            response = anonymous.get(path)
            assert_error(response, 401)
            assert response.headers["www-authenticate"].startswith("Bearer")
            for why, token in bad_tokens(live.settings, reader).items():
                response = anonymous.get(path, headers={"Authorization": f"Bearer {token}"})
                assert_error(response, 401)
                assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"', why
            assert_error(anonymous.get(path, headers={"Authorization": f"Basic {mint_token(live.settings, reader)}"}),
                         401)
    with live.http("read-api", user=author) as someone_else:
        assert_error(someone_else.get(f"/v1/users/{reader}/feed"), 403)
    live.drain()
    time.sleep(1)  # UserSeen is sent in the background: give a wrong one time to arrive
    live.drain()
    assert live.worker_metric('fanout_events_consumed_total{type="UserSeen"}') == seen_before
    # No feed read recorded: the reader's last_seen (a static of their inbox partition) is still unset.
    assert all(r.last_seen is None for r in live.cql("SELECT last_seen FROM inbox WHERE user_id = %s", reader))

    with live.http("read-api", user=reader) as own:
        mine = own.get("/v1/feed").raise_for_status().json()
        assert own.get(f"/v1/users/{reader}/feed").raise_for_status().json() == mine
    assert [i["post_id"] for i in mine["items"]] == [post.post_id]
    live.wait_metric('fanout_events_consumed_total{type="UserSeen"}', seen_before + 1)  # the control


def test_the_ingest_api_acts_only_as_the_token_user(live: Deployment) -> None:
    me, other = users(2)
    published = live.processes.metric("fanout_events_published_total", "ingest-api")
    calls = [("POST", "/v1/posts", {"json": {"body": "x"}}), ("DELETE", "/v1/posts/123", {}),
             ("POST", "/v1/follows", {"json": {"followee_id": other}}),
             ("DELETE", "/v1/follows", {"params": {"followee_id": other}})]
    with live.http("ingest-api") as anonymous:
        for method, path, kwargs in calls:
            assert_error(anonymous.request(method, path, **kwargs), 401)
            bad = {"Authorization": f"Bearer {bad_tokens(live.settings, me)['expired']}"}
            assert_error(anonymous.request(method, path, headers=bad, **kwargs), 401)
    with live.http("ingest-api", user=me) as http:
        assert_error(http.post("/v1/posts", json={"author_id": other, "body": "as someone else"}), 403)
        assert_error(http.delete("/v1/posts/123", params={"author_id": other}), 403)
        assert_error(http.post("/v1/follows", json={"follower_id": other, "followee_id": me}), 403)
        assert_error(http.delete("/v1/follows", params={"follower_id": other, "followee_id": me}), 403)
        assert_error(http.post("/v1/follows", json={"followee_id": me}), 422)
        assert_error(http.delete("/v1/follows", params={"followee_id": me}), 422)
    assert live.processes.metric("fanout_events_published_total", "ingest-api") == published
    with live.http("ingest-api", user=me) as http:  # the same requests as themselves are accepted
        assert http.post("/v1/posts", json={"author_id": me, "body": "as myself"}).status_code == 202
        assert http.post("/v1/follows", json={"follower_id": me, "followee_id": other}).status_code == 202
        assert http.delete("/v1/follows", params={"followee_id": other}).status_code == 202


def test_only_the_author_deletes_a_post_and_a_deleted_post_never_comes_back(live: Deployment) -> None:
    author, follower, intruder = users(3)
    live.publish([Followed(event_time=wall_ms(), follower_id=follower, followee_id=author)])
    live.drain()
    with live.http("ingest-api", user=author) as as_author:
        doomed = as_author.post("/v1/posts", json={"body": "to be deleted"}).raise_for_status().json()["post_id"]
        kept = as_author.post("/v1/posts", json={"body": "to stay"}).raise_for_status().json()["post_id"]
    live.drain()
    assert live.feed(follower) == [kept, doomed]
    # Someone else's post and a post that does not exist get the same answer: nobody learns which ids exist.
    unknown = kept + 1
    with live.http("ingest-api", user=intruder) as as_intruder:
        answers = [as_intruder.delete(f"/v1/posts/{pid}") for pid in (doomed, unknown)]
    for answer in answers:
        assert_error(answer, 404)
    assert answers[0].json()["error"].replace(str(doomed), "P") == answers[1].json()["error"].replace(str(unknown), "P")
    with live.http("ingest-api", user=author) as as_author:
        assert as_author.delete(f"/v1/posts/{doomed}").status_code == 202
        assert_error(as_author.delete(f"/v1/posts/{unknown}"), 404)
    live.drain()
    assert live.feed(follower) == [kept]
    # Past the API, straight to Kafka: the worker refuses, counts, and writes nothing.
    refused = live.worker_metric("fanout_deletes_refused_total")
    later = wall_ms() + 60_000
    live.publish([PostDeleted(event_time=later, post_id=pid, author_id=intruder) for pid in (doomed, kept, unknown)])
    live.drain()
    assert live.worker_metric("fanout_deletes_refused_total") == refused + 3
    assert live.feed(follower) == [kept]
    assert live.cql("SELECT post_id FROM posts WHERE post_id = %s", unknown) == []  # not even a claim


def test_a_retried_post_gets_the_first_answer_and_publishes_once_across_two_replicas(live: Deployment,
                                                                                      tmp_path_factory:
                                                                                      pytest.TempPathFactory) -> None:
    author, follower = users(2)
    live.publish([Followed(event_time=wall_ms(), follower_id=follower, followee_id=author)])
    live.drain()
    second = dataclasses.replace(live.settings, ingest_api_port=free_port(), node_id=7)
    with ProcessGroup(second, tmp_path_factory.mktemp("second-ingest")).start("ingest-api") as replica:
        urls = [live.processes.url("ingest-api"), replica.url("ingest-api")]
        published = sum(g.metric("fanout_events_published_total", "ingest-api")
                        for g in (live.processes, replica))
        headers = {**live.tokens.headers(author), "Idempotency-Key": "post-once-1"}

        def post(n: int) -> httpx.Response:  # a client retrying through a load balancer, all at once
            return httpx.post(urls[n % 2] + "/v1/posts", json={"body": "exactly once"}, headers=headers, timeout=60)

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(post, range(8)))
        assert {r.status_code for r in answers} == {202}
        assert len({r.json()["post_id"] for r in answers}) == 1
        assert sum(r.headers.get("idempotent-replayed") == "true" for r in answers) == 7
        later = httpx.post(urls[1] + "/v1/posts", json={"body": "exactly once"}, headers=headers, timeout=60)
        assert later.json() == answers[0].json()
        assert_error(httpx.post(urls[0] + "/v1/posts", json={"body": "another post"}, headers=headers), 409)

        follow = {**live.tokens.headers(follower), "Idempotency-Key": "follow-once"}
        followed = [httpx.post(u + "/v1/follows", json={"followee_id": author + 100}, headers=follow) for u in urls]
        assert [f.status_code for f in followed] == [202, 202] and followed[0].json() == followed[1].json()
        assert sum(g.metric("fanout_events_published_total", "ingest-api")
                   for g in (live.processes, replica)) == published + 2  # one post, one follow
    live.drain()
    assert live.feed(follower) == [answers[0].json()["post_id"]]
    [row] = live.cql("SELECT response FROM idempotency_keys WHERE user_id = %s AND key = %s", author, "post-once-1")
    assert row.response == later.content


def test_fanout_token_signs_with_the_services_secret_from_any_working_directory(live: Deployment,
                                                                                tmp_path: Path) -> None:
    """`cd /tmp && fanout token 7` once made a new secret under /tmp/.fanout/state, which the services
    rejected; the secret's path is anchored to the project, as the state dir is."""
    me = users(1)[0]
    fanout = Path(sys.executable).parent / "fanout"
    token = subprocess.run([str(fanout), "token", str(me)], cwd=tmp_path, capture_output=True, text=True,
                           check=True, env={**os.environ, **live.settings.to_env()}).stdout.strip()
    assert not (tmp_path / ".fanout").exists()
    read = httpx.get(f"{live.processes.url('read-api')}/v1/feed", headers={"Authorization": f"Bearer {token}"})
    assert read.status_code == 200, read.text


def test_every_answer_carries_security_headers_and_head_works_wherever_get_does(live: Deployment) -> None:
    me = users(1)[0]
    with live.http("read-api", user=me) as reads, live.http("ingest-api", user=me) as writes:
        answers = {
            "page": httpx.get(live.processes.url("read-api") + "/"),
            "feed": reads.get("/v1/feed"),
            "401": httpx.get(live.processes.url("read-api") + "/v1/feed"),
            "404 delete": writes.delete("/v1/posts/1"),
            "spec": httpx.get(live.processes.url("ingest-api") + "/openapi.json"),
            "head page": httpx.head(live.processes.url("read-api") + "/"),
            "head stream": reads.head("/v1/feed/stream"),
        }
    assert {name: r.status_code for name, r in answers.items()} == {
        "page": 200, "feed": 200, "401": 401, "404 delete": 404, "spec": 200, "head page": 200, "head stream": 200}
    for name, r in answers.items():
        csp = r.headers.get("content-security-policy", "")
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "default-src 'none'" in csp, name
        assert (r.headers.get("x-content-type-options"), r.headers.get("referrer-policy")) == ("nosniff",
                                                                                             "no-referrer"), name
    assert answers["head page"].content == b"" and answers["head stream"].content == b""
    # No /docs: FastAPI's Swagger UI loads from a CDN (blank offline) with inline script the CSP forbids.
    assert [httpx.get(live.processes.url(api) + path).status_code
            for api in ("read-api", "ingest-api") for path in ("/docs", "/redoc")] == [404] * 4


def test_a_user_writing_too_fast_gets_429_with_retry_after_and_publishes_nothing_more(live: Deployment) -> None:
    """FANOUT_RATE_LIMIT_WRITES (10 per second by default): follow/unfollow toggling as fast as the API lets
    a user, 30 requests at once."""
    me, other = users(2)
    published = live.processes.metric("fanout_events_published_total", "ingest-api")
    with live.http("ingest-api", user=me) as http, ThreadPoolExecutor(30) as pool:
        answers = list(pool.map(lambda n: (http.post("/v1/follows", json={"followee_id": other}) if n % 2 else
                                           http.delete("/v1/follows", params={"followee_id": other})), range(30)))
    accepted = [a for a in answers if a.status_code == 202]
    limited = [a for a in answers if a.status_code == 429]
    assert len(accepted) + len(limited) == 30 and 1 <= len(accepted) <= 20 and limited, [a.text for a in answers]
    for answer in limited:
        assert_error(answer, 429)
        assert 1 <= int(answer.headers["retry-after"]) <= 60
    assert live.processes.metric("fanout_events_published_total", "ingest-api") == published + len(accepted)
    time.sleep(int(limited[0].headers["retry-after"]))
    with live.http("ingest-api", user=me) as http:  # room again once the window moved on
        assert http.post("/v1/follows", json={"followee_id": other}).status_code == 202
    with live.http("ingest-api", user=other) as http:  # and another user never waited
        assert http.post("/v1/follows", json={"followee_id": me}).status_code == 202


def test_a_user_reading_faster_than_a_person_gets_429(live: Deployment) -> None:
    """FANOUT_RATE_LIMIT_READS (20/second by default): a client reading one feed in a loop."""
    me, other = users(2)
    with live.http("read-api", user=me) as http, ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda _: http.get("/v1/feed"), range(60)))
    assert {a.status_code for a in answers} == {200, 429}
    assert sum(a.status_code == 200 for a in answers) <= 40
    with live.http("read-api", user=other) as http:
        assert http.get("/v1/feed").status_code == 200  # per user


def test_a_user_follows_at_most_max_following_accounts(live: Deployment) -> None:
    """FANOUT_MAX_FOLLOWING (5,000): large networks cap follows about there before ratio rules apply."""
    me = users(1)[0]
    cap = live.settings.max_following
    followees = range(8_100_000_001, 8_100_000_001 + cap)
    live.publish([Followed(event_time=wall_ms(), follower_id=me, followee_id=f) for f in followees])
    live.drain()
    with live.http("ingest-api", user=me) as http:
        refused = http.post("/v1/follows", json={"followee_id": 8_200_000_001})
        assert_error(refused, 403)
        assert f"follows {cap} accounts" in refused.json()["error"]
        assert http.post("/v1/follows", json={"followee_id": followees[0]}).status_code == 202  # already followed
        assert http.delete("/v1/follows", params={"followee_id": followees[1]}).status_code == 202
    live.drain()
    with live.http("ingest-api", user=me) as http:  # room for one again
        assert http.post("/v1/follows", json={"followee_id": 8_200_000_001}).status_code == 202


def test_an_address_failing_authentication_too_often_gets_429(live: Deployment) -> None:
    url = live.processes.url("read-api") + "/v1/feed"
    answers: list[httpx.Response] = []
    with ThreadPoolExecutor(20) as pool:  # 50/second, or at the latest 1,000/minute (the defaults)
        while not any(a.status_code == 429 for a in answers) and len(answers) < 1_200:
            answers += pool.map(lambda _: httpx.get(url, headers={"Authorization": "Bearer forged"}), range(100))
    codes = {a.status_code for a in answers}
    assert codes == {401, 429}, codes
    retry = max(int(a.headers["retry-after"]) for a in answers if a.status_code == 429)
    me = users(1)[0]
    with live.http("read-api", user=me) as http:
        assert http.get("/v1/feed").status_code == 200  # a valid token is never limited by others' failures
    time.sleep(retry)  # the next tests' 401s are 401s again


def test_bodies_are_not_converted_laxly(live: Deployment) -> None:
    """JSON true is not the integer 1, nor "7" the integer 7, nor 3.5 an id: each is a 422, as the schema says; 3.0
    is the integer 3 in JSON Schema, and is taken."""
    me = users(1)[0]
    with live.http("ingest-api", user=me) as http:
        assert_error(http.post("/v1/notifications/read", json={"up_to": True}), 422)
        assert_error(http.post("/v1/follows", json={"followee_id": True}), 422)
        assert_error(http.post("/v1/follows", json={"followee_id": str(me + 1)}), 422)
        assert_error(http.post("/v1/posts", json={"body": "x", "in_reply_to": 3.5}), 422)
        assert_error(http.post("/v1/posts", json={"body": 7}), 422)
        assert http.post("/v1/notifications/read", json={"up_to": 3.0}).status_code == 204


def test_limits_answer_with_clear_errors(live: Deployment) -> None:
    me = users(1)[0]
    with live.http("ingest-api", user=me) as http:
        assert_error(http.post("/v1/posts", json={"body": "x" * 70_000}), 413)
        assert_error(http.post("/v1/posts", json={"body": "x" * 5001}), 422)
        assert_error(http.post("/v1/posts", json={"body": ""}), 422)
        as_json = {"content-type": "application/json"}
        assert_error(http.post("/v1/posts", content=b'{"body": "\\ud800 alone"}', headers=as_json), 422)
        assert_error(http.post("/v1/posts", content=b'{"body": "\xff"}', headers=as_json), 400)
        assert_error(http.post("/v1/follows", json={"followee_id": MAX_USER_ID + 1}), 422)
        assert_error(http.delete("/v1/posts/0"), 422)
        assert_error(http.post("/v1/posts", json={"body": "x"}, headers={"Idempotency-Key": "with space"}), 422)
        assert_error(http.post("/v1/posts", json={"body": "x", "extra": 1}), 422)
        for method in ("TRACE", "PUT", "PATCH"):
            response = http.request(method, "/v1/follows")
            assert_error(response, 405)
            assert response.headers["allow"] == "DELETE, POST"
    with live.http("read-api", user=me) as http:
        assert_error(http.get("/v1/feed", params={"cursor": "abc"}), 422)
        assert http.get("/v1/feed", params={"cursor": "9" * 19}).status_code == 200  # above every id: the newest
        assert_error(http.request("TRACE", "/v1/feed"), 405)
        spec = http.get("/openapi.json").json()
    cursor = next(p for p in spec["paths"]["/v1/feed"]["get"]["parameters"] if p["name"] == "cursor")
    assert cursor["schema"]["anyOf"][0]["pattern"]
    scheme = spec["components"]["securitySchemes"]["HTTPBearer"]
    assert (scheme["type"], scheme["scheme"], scheme["bearerFormat"]) == ("http", "bearer", "JWT")
    assert spec["paths"]["/v1/feed"]["get"]["security"] == [{"HTTPBearer": []}]
    assert set(spec["paths"]["/v1/users/{user_id}/feed"]["get"]["responses"]) == {
        "200", "401", "403", "422", "429", "500"}


def test_metrics_and_health_need_no_token_and_show_no_user_data(live: Deployment) -> None:
    for name in ("read-api", "ingest-api", "worker"):
        url = live.processes.url(name)
        if name != "worker":
            assert httpx.get(url + "/healthz").json() == {"status": "ok"}
        page = httpx.get(url + "/metrics").raise_for_status().text
        assert "fanout_" in page
        # Every user of this module has read, posted or followed by now: none of their ids is on the page.
        assert not any(str(user) in page for user in range(7_310_000_001, next(_ids))), name
        labels = ('user="', 'user_id="', 'author="', 'author_id="', 'follower_id="')
        assert not any(label in page for label in labels), name
