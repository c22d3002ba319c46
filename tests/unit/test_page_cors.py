"""The ingest API lets the feed page call it from the page's origins (CORS), and no other origin: a
preflight from the read API's page gets the methods and headers the page sends; one from another site does
not, and an answer to it carries no Access-Control-Allow-Origin a browser would accept."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from fanout.adapters.memory import MemoryStorage
from fanout.api.auth import TokenVerifier
from fanout.metrics import Metrics
from fanout.settings import Settings
from fanout.write.api import create_app

READ_PORT, INGEST_PORT = 18_080, 18_081


def _ingest(tmp_path: Path, **overrides: Any) -> FastAPI:
    s = Settings.load(env={}, read_api_port=READ_PORT, ingest_api_port=INGEST_PORT,
                      jwt_secret_file=str(tmp_path / "secret"), **overrides)
    storage = MemoryStorage(s)
    # A preflight and a refused request reach neither Kafka nor the idempotency keys.
    return create_app(None, Metrics(), TokenVerifier(s), storage, storage, None, s,  # type: ignore[arg-type]
                      storage.notifications)


async def _call(app: FastAPI, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=f"http://127.0.0.1:{INGEST_PORT}") as client:
        return await asyncio.wait_for(client.request(method, path, headers=headers), timeout=5)


async def _preflight(app: FastAPI, origin: str, method: str = "POST", path: str = "/v1/posts") -> httpx.Response:
    return await _call(app, "OPTIONS", path, {"Origin": origin, "Access-Control-Request-Method": method,
                                        "Access-Control-Request-Headers": "authorization,content-type,idempotency-key"})


@pytest.mark.parametrize("origin", [f"http://127.0.0.1:{READ_PORT}", f"http://localhost:{READ_PORT}"])
@pytest.mark.parametrize(("method", "path"), [("POST", "/v1/posts"), ("POST", "/v1/follows"),
                                              ("DELETE", "/v1/follows?followee_id=2")])
async def test_a_preflight_from_the_read_apis_page_is_allowed(tmp_path: Path, origin: str, method: str,
                                                              path: str) -> None:
    answer = await _preflight(_ingest(tmp_path), origin, method, path)
    assert answer.status_code == 200, answer.text
    assert answer.headers["access-control-allow-origin"] == origin
    assert {m.strip() for m in answer.headers["access-control-allow-methods"].split(",")} >= {"POST", "DELETE"}
    allowed = {h.strip().lower() for h in answer.headers["access-control-allow-headers"].split(",")}
    assert allowed >= {"authorization", "content-type", "idempotency-key"}
    assert "access-control-allow-credentials" not in answer.headers  # a bearer header, never a cookie


@pytest.mark.parametrize("origin", ["http://evil.example", f"http://127.0.0.1:{INGEST_PORT}",
                                    f"https://127.0.0.1:{READ_PORT}", f"http://127.0.0.1:{READ_PORT + 10}"])
async def test_a_preflight_from_another_origin_is_refused(tmp_path: Path, origin: str) -> None:
    answer = await _preflight(_ingest(tmp_path), origin)
    assert answer.status_code == 400
    assert "access-control-allow-origin" not in answer.headers


async def test_an_answer_to_the_page_is_readable_by_it_and_to_another_site_is_not(tmp_path: Path) -> None:
    app = _ingest(tmp_path)
    page = await _call(app, "POST", "/v1/follows", {"Origin": f"http://localhost:{READ_PORT}"})
    assert page.status_code == 401  # no token: the page can show why
    assert page.headers["access-control-allow-origin"] == f"http://localhost:{READ_PORT}"
    other = await _call(app, "POST", "/v1/follows", {"Origin": "http://evil.example"})
    assert other.status_code == 401 and "access-control-allow-origin" not in other.headers


async def test_configured_page_origins_replace_the_defaults(tmp_path: Path) -> None:
    app = _ingest(tmp_path, page_origins="https://feed.example.com, https://feed.example.org/")
    allowed = await _preflight(app, "https://feed.example.org")
    assert allowed.headers["access-control-allow-origin"] == "https://feed.example.org"
    assert (await _preflight(app, f"http://127.0.0.1:{READ_PORT}")).status_code == 400
