"""Notification feeds end to end: likes, replies, mentions and follows through the ingest API, the notifier
and Cassandra, read back through the read API as their owner sees them."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from live import Deployment, deploy
from sse import Stream

from fanout.settings import Settings

AUTHOR = 5_000_001


@pytest.fixture(scope="module")
def live(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with deploy(stack, tmp_path_factory.mktemp("logs"), "notify", rate_limit_writes="") as d:
        yield d


def notifications(d: Deployment, user: int, **params: Any) -> dict[str, Any]:
    with d.http("read-api", user) as c:
        body: dict[str, Any] = c.get("/v1/notifications", params=params).raise_for_status().json()
        return body


def until(d: Deployment, user: int, done: Callable[[dict[str, Any]], bool], timeout: float = 30) -> dict[str, Any]:
    """The user's first page of notifications, once `done` holds for it."""
    deadline = time.monotonic() + timeout
    while True:
        page = notifications(d, user)
        if done(page):
            return page
        if time.monotonic() > deadline:
            raise AssertionError(f"notifications of {user} never got there: {page}")
        d.processes.check_alive()
        time.sleep(0.1)


def post(d: Deployment, author: int, body: str, **extra: Any) -> int:
    with d.http("ingest-api", author) as c:
        post_id: int = c.post("/v1/posts", json={"body": body, **extra}).raise_for_status().json()["post_id"]
    return post_id


def likes(d: Deployment, post_id: int, users: range | list[int], method: str = "POST") -> None:
    for user in users:
        with d.http("ingest-api", user) as c:
            assert c.request(method, f"/v1/posts/{post_id}/likes").status_code == 202


def of(page: dict[str, Any], kind: str, target: int) -> list[dict[str, Any]]:
    return [n for n in page["notifications"] if (n["kind"], n["target"]) == (kind, target)]


def test_likes_group_per_post_count_exactly_and_a_read_group_closes(live: Deployment) -> None:
    d, author = live, AUTHOR
    p = post(d, author, "like this")
    likers = list(range(6_000_001, 6_000_011))
    likes(d, p, likers)
    likes(d, p, likers[:3])  # liking again is not a second like
    page = until(d, author, lambda pg: bool(of(pg, "like", p)) and of(pg, "like", p)[0]["actors"] == 10)
    [group] = of(page, "like", p)
    assert group["latest"] == likers[::-1][:3] and group["read"] is False and page["unread"] >= 1
    assert group["text"] == f"user {likers[9]}, user {likers[8]}, user {likers[7]} and 7 others liked your post {p}"
    assert notifications(d, likers[0])["notifications"] == []  # a liker sees none of the author's

    likes(d, p, [likers[9], likers[8], 6_999_999], method="DELETE")  # the last one never liked
    until(d, author, lambda pg: of(pg, "like", p)[0]["actors"] == 8 and of(pg, "like", p)[0]["latest"][0] == likers[7])

    with d.http("ingest-api", author) as c:
        assert c.post("/v1/notifications/read", json={"up_to": group["id"]}).status_code == 204
    with d.http("read-api", author) as c:
        assert c.get("/v1/notifications/unread").json() == {"unread": 0}
    likes(d, p, [6_000_100])
    page = until(d, author, lambda pg: len(of(pg, "like", p)) == 2)
    newest, old = of(page, "like", p)
    assert (newest["actors"], newest["latest"], newest["read"]) == (1, [6_000_100], False)
    assert (old["actors"], old["read"], page["unread"]) == (8, True, 1)


def test_replies_mentions_and_follows_reach_their_owner(live: Deployment) -> None:
    d, author, other = live, AUTHOR + 1, 6_100_001
    p = post(d, author, "a post to reply to")
    reply = post(d, other, f"@{author} agreed, and @{other} too", in_reply_to=p)
    with d.http("ingest-api", other) as c:
        assert c.post("/v1/follows", json={"followee_id": author}).status_code == 202
        missing = c.post("/v1/posts", json={"body": "to nothing", "in_reply_to": p + 1})
    assert missing.status_code == 404 and "in_reply_to" in missing.json()["error"]
    page = until(d, author, lambda pg: len(pg["notifications"]) == 3)
    assert sorted((n["kind"], n["target"], n["latest"]) for n in page["notifications"]) == [
        ("follow", author, [other]), ("mention", reply, [other]), ("reply", p, [other])]
    assert notifications(d, other)["notifications"] == []  # mentioning oneself notifies nobody

    # Deleting the reply withdraws its mention; the reply notice stays (the group counts repliers, not replies).
    with d.http("ingest-api", other) as c:
        assert c.delete(f"/v1/posts/{reply}").status_code == 202
    page = until(d, author, lambda pg: not of(pg, "mention", reply))
    assert sorted((n["kind"], n["target"]) for n in page["notifications"]) == [("follow", author), ("reply", p)]


def test_pages_walk_every_group_newest_first_and_errors_are_clear(live: Deployment) -> None:
    d, author = live, AUTHOR + 2
    posts = [post(d, author, f"post {i}") for i in range(5)]
    for p in posts:
        likes(d, p, [6_200_001])
    until(d, author, lambda pg: len(pg["notifications"]) == 5)
    first = notifications(d, author, limit=3)
    rest = notifications(d, author, limit=3, before=first["next_before"])
    assert [n["target"] for n in first["notifications"] + rest["notifications"]] == posts[::-1]
    assert rest["next_before"] is None
    with d.http("ingest-api", 6_200_001) as c:
        assert c.post(f"/v1/posts/{posts[0] + 1}/likes").status_code == 404
        assert c.post("/v1/notifications/read", json={"up_to": 0}).status_code == 422
    with d.http("read-api", author) as c:
        assert c.get("/v1/notifications", params={"limit": 0}).status_code == 422
    with d.http("read-api") as anonymous:
        assert anonymous.get("/v1/notifications").status_code == 401



def test_a_notification_reaches_its_owners_live_stream_as_it_changes(live: Deployment) -> None:
    d, author = live, AUTHOR + 3
    stream = Stream(f"{d.processes.url('read-api')}/v1/feed/stream", d.tokens.headers(author)).start()
    try:
        p = post(d, author, "watched live")
        likes(d, p, [6_300_001, 6_300_002])
        deadline = time.monotonic() + 30
        while not any(e.event == "notification" and e.data["actors"] == 2 for e in stream.events):
            assert time.monotonic() < deadline, f"no notification on the stream: {stream.events}"
            time.sleep(0.05)
    finally:
        stream.stop()
    live_group = [e.data for e in stream.events if e.event == "notification"][-1]
    [stored] = of(notifications(d, author), "like", p)
    assert {k: live_group[k] for k in ("id", "kind", "target", "actors", "latest", "text")} == \
        {k: stored[k] for k in ("id", "kind", "target", "actors", "latest", "text")}
