"""fanout/api/http.py's SecurityHeaders on an app built like the services' (add_common_routes): the headers on
every answer, errors included, and HEAD wherever GET is, a never-ending stream included."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse, StreamingResponse

from fanout.api.http import SECURITY_HEADERS, add_common_routes
from fanout.metrics import Metrics


def _app() -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None)
    add_common_routes(app, Metrics())

    @app.get("/")
    async def page() -> HTMLResponse:
        return HTMLResponse("<p>page</p>")

    @app.get("/missing")
    async def missing() -> None:
        raise HTTPException(404, "not here")

    @app.get("/broken")
    async def broken() -> None:
        raise RuntimeError("a bug")

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def forever() -> AsyncIterator[bytes]:
            while True:
                yield b": heartbeat\n\n"
                await asyncio.sleep(0.01)

        return StreamingResponse(forever(), media_type="text/event-stream")

    return app


async def _call(method: str, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await asyncio.wait_for(client.request(method, path), timeout=5)


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/", 200), ("GET", "/missing", 404), ("GET", "/broken", 500), ("POST", "/", 405),
    ("GET", "/healthz", 200), ("GET", "/docs", 404), ("HEAD", "/", 200),
])
async def test_every_answer_carries_the_security_headers(method: str, path: str, status: int) -> None:
    response = await _call(method, path)
    assert response.status_code == status
    for name, value in SECURITY_HEADERS:
        assert response.headers[name.decode()] == value.decode(), name
    assert b"frame-ancestors 'none'" in dict(SECURITY_HEADERS)[b"content-security-policy"]


async def test_head_answers_what_get_would_without_a_body() -> None:
    get, head = await _call("GET", "/"), await _call("HEAD", "/")
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["content-type"] == get.headers["content-type"]
    assert head.headers["content-length"] == get.headers["content-length"] == str(len(get.content))


async def test_head_of_a_stream_ends_once_its_headers_are_out() -> None:
    head = await _call("HEAD", "/stream")  # a GET of it never ends
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["content-type"].startswith("text/event-stream")
