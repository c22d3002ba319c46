"""Signed-in links to the feed page: `fanout token USER_ID --url` and `fanout up` print the page with a
token in the fragment, and the read API serves the page ready to write through the ingest API (its port
in the document, its origins in the page's connect-src, no Referer)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from typer.testing import CliRunner

from fanout.adapters.memory import MemoryStorage
from fanout.api.auth import TokenVerifier
from fanout.metrics import Metrics
from fanout.read.api import create_app
from fanout.read.page import ingest_origins, page_url
from fanout.read.stream import StreamHub
from fanout.settings import Settings
from services import cli, up

READ_PORT, INGEST_PORT = 18_080, 18_081


def _settings(tmp_path: Path, **overrides: object) -> Settings:
    return Settings.load(env={}, read_api_port=READ_PORT, ingest_api_port=INGEST_PORT,
                         jwt_secret_file=str(tmp_path / "secret"), **overrides)


def _user_of(url: str, s: Settings) -> int:
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path, parts.query) == ("http", f"127.0.0.1:{READ_PORT}", "/", "")
    key, _, token = parts.fragment.partition("=")
    assert key == "token"
    return TokenVerifier(s).verify(token)


def test_a_page_url_carries_the_token_only_in_the_fragment(tmp_path: Path) -> None:
    assert page_url(_settings(tmp_path), "a.b.c") == f"http://127.0.0.1:{READ_PORT}/#token=a.b.c"
    assert page_url(_settings(tmp_path, host="0.0.0.0"), "a.b.c").startswith(f"http://127.0.0.1:{READ_PORT}/#")


def test_fanout_token_url_prints_the_page_signed_in_as_the_user(tmp_path: Path) -> None:
    env = {"FANOUT_READ_API_PORT": str(READ_PORT), "FANOUT_JWT_SECRET_FILE": str(tmp_path / "secret")}
    runner = CliRunner()
    url = runner.invoke(cli.app, ["token", "2", "--url"], env=env)
    assert url.exit_code == 0, url.output
    assert _user_of(url.output.strip(), _settings(tmp_path)) == 2
    token = runner.invoke(cli.app, ["token", "2"], env=env)  # without --url: the bare token, as before
    assert token.exit_code == 0 and TokenVerifier(_settings(tmp_path)).verify(token.output.strip()) == 2


def test_fanout_up_announces_a_page_per_demo_user_once_both_apis_answer(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    s = _settings(tmp_path)
    polls: list[str] = []

    def answers(url: str) -> bool:  # each API answers from its third poll on
        polls.append(url)
        return polls.count(url) >= 3

    monkeypatch.setattr(up, "_answers", answers)
    said: list[str] = []
    up.announce_pages(s, ["http://read/healthz", "http://ingest/healthz"], said.append, poll_s=0)
    assert polls.count("http://read/healthz") == polls.count("http://ingest/healthz") == 3
    links = [line.split(": ", 1) for line in said if line.startswith("user ")]
    assert [(who, _user_of(url, s)) for who, url in links] == [("user 1", 1), ("user 2", 2)]
    assert "12 h" in said[0]
    assert TokenVerifier(s).verify_until(links[0][1].split("=", 1)[1])[1] > up.time.time() + 11 * 3600


def test_fanout_up_waits_for_the_read_api_and_the_ingest_api() -> None:
    _, programs = up.programs(Settings.load(env={}, read_api_port=READ_PORT, ingest_api_port=INGEST_PORT))
    ready = {p.name: p.ready_url for p in programs}
    assert ready["read-api"] == f"http://127.0.0.1:{READ_PORT}/healthz"
    assert ready["ingest-api"] == f"http://127.0.0.1:{INGEST_PORT}/healthz"


def test_the_page_may_connect_to_the_ingest_api_at_each_page_origin(tmp_path: Path) -> None:
    assert ingest_origins(_settings(tmp_path)) == [f"http://127.0.0.1:{INGEST_PORT}", f"http://localhost:{INGEST_PORT}"]
    configured = _settings(tmp_path, page_origins="https://feed.example.com:8443,http://[::1]:8080")
    assert ingest_origins(configured) == [f"https://feed.example.com:{INGEST_PORT}", f"http://[::1]:{INGEST_PORT}"]
    published = _settings(tmp_path, page_origins="http://127.0.0.1:18080", page_ingest_port=18081)  # compose
    assert ingest_origins(published) == ["http://127.0.0.1:18081"]


async def test_the_read_api_serves_the_page_ready_to_write_through_the_ingest_api(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    storage = MemoryStorage(s)
    hub = StreamHub(None, Metrics(), reorder_ms=0, heartbeat_s=1)  # type: ignore[arg-type]
    app = create_app(storage.stores(), s, Metrics(), TokenVerifier(s), hub=hub)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=f"http://127.0.0.1:{READ_PORT}") as client:
        page, script = await asyncio.gather(client.get("/"), client.get("/static/feed.js"))
    assert page.status_code == script.status_code == 200
    assert f'<meta name="fanout-ingest-port" content="{INGEST_PORT}">' in page.text
    assert '<meta name="referrer" content="no-referrer">' in page.text
    csp = dict(part.strip().split(" ", 1) for part in page.headers["content-security-policy"].split(";"))
    assert csp["connect-src"] == f"'self' http://127.0.0.1:{INGEST_PORT} http://localhost:{INGEST_PORT}"
    assert csp["default-src"] == "'none'" and csp["frame-ancestors"] == "'none'"
    assert page.headers["referrer-policy"] == "no-referrer"
