"""What the HTTP services share: the caller's identity (bearer tokens), the JSON error shape (never a
traceback) and its OpenAPI declarations, the request body limit, security headers and HEAD, and the
unauthenticated /metrics and /healthz (process-level numbers only: no user ids, no request contents)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, NoReturn

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fanout.api.auth import InvalidToken, TokenVerifier
from fanout.api.rate_limits import Kind, RateLimited, RateLimits
from fanout.metrics import Metrics


class ErrorBody(BaseModel):
    error: str  # one readable message
    detail: list[dict[str, Any]] | None = None  # for 422: every problem found in the request


_WHY = {
    400: "the body could not be read (not UTF-8, or not JSON)",
    401: "no bearer token, or one that is invalid or expired",
    403: "the token's user may not do this (another user's feed, or acting as someone else)",
    404: "not found",
    409: "the Idempotency-Key was used before with another request, by this user",
    413: "the request body is larger than FANOUT_MAX_BODY_BYTES",
    422: "invalid input: the message says which field and why",
    429: "too many requests (or live streams) for now: retry after the Retry-After seconds",
    500: "an unexpected error (logged; the message names its class only)",
    503: "a server behind this one is unavailable: retry later",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI declarations of the errors an operation can answer, all with the JSON error shape. An
    operation that takes a token may also answer 429 (a rate limit, `fanout/api/rate_limits.py`)."""
    limited = (429,) if 401 in codes else ()
    return {code: {"model": ErrorBody, "description": _WHY[code]} for code in (*codes, *limited, 422, 500)}


BEARER = {"HTTPBearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                         "description": "A JWT whose `sub` is the caller's user id; `fanout token USER_ID` mints "
                                        "one locally."}}


def require_tokens(app: FastAPI, verifier: TokenVerifier, metrics: Metrics, limits: RateLimits | None = None) -> None:
    """Let `Reader`, `Writer` and `Streamer` parameters of this app's routes verify bearer tokens with
    `verifier` (and count requests against `limits`, if given), and declare the bearer scheme on those
    routes in the OpenAPI spec."""
    app.state.verifier, app.state.metrics, app.state.limits = verifier, metrics, limits
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = app.openapi_schema = generate()  # kept by FastAPI too: this runs once
            spec.setdefault("components", {})["securitySchemes"] = BEARER
            for route in app.routes:
                if isinstance(route, APIRoute) and any(d.call in AUTHENTICATED for d in route.dependant.dependencies):
                    for method in route.methods or ():
                        spec["paths"][route.path_format][method.lower()]["security"] = [{"HTTPBearer": []}]
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _verified(request: Request) -> tuple[int, float]:
    # Reads the header itself rather than through fastapi.security.HTTPBearer, a sub-dependency that cost
    # ~25 µs per request; the scheme is declared in the spec by require_tokens instead.
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        _unauthenticated(request, "missing bearer token: send 'Authorization: Bearer <token>'", "Bearer")
    try:
        verified: tuple[int, float] = request.app.state.verifier.verify_until(token.strip())
    except InvalidToken as exc:
        _unauthenticated(request, str(exc), 'Bearer error="invalid_token"')
    return verified


def _unauthenticated(request: Request, why: str, challenge: str) -> NoReturn:
    """A 401; a 429 instead once the client's address has failed authentication too often."""
    _limit(request, "unauthenticated", request.client.host if request.client else "unknown")
    request.app.state.metrics.auth_rejections.labels("401").inc()
    raise HTTPException(401, why, headers={"WWW-Authenticate": challenge})


def _limit(request: Request, kind: Kind, who: str) -> None:
    limits: RateLimits | None = request.app.state.limits
    if limits is None:
        return
    try:
        limits.take(kind, who)
    except RateLimited as exc:
        request.app.state.metrics.rate_limited.labels(kind).inc()
        raise HTTPException(429, str(exc), headers={"Retry-After": str(exc.retry_after)}) from None


async def _reader(request: Request) -> int:
    user_id = _verified(request)[0]
    _limit(request, "reads", str(user_id))
    return user_id


async def _writer(request: Request) -> int:
    user_id = _verified(request)[0]
    _limit(request, "writes", str(user_id))
    return user_id


@dataclass(frozen=True)
class Bearer:
    """The caller of a long request (a live stream), which must end when the token does."""

    user_id: int
    expires_ms: int


async def _streamer(request: Request) -> Bearer:
    user_id, until = _verified(request)
    _limit(request, "streams", str(user_id))
    return Bearer(user_id, int(until * 1000))


# A route parameter of this type is the user id of the verified bearer token, or a 401 before the handler
# runs (so a request that fails authentication does nothing: no read, no write, no event), counted against
# the user's read limit (429 beyond it).
Reader = Annotated[int, Depends(_reader)]
# The same for a write, counted against the user's write limit (429 beyond it, before the handler runs).
Writer = Annotated[int, Depends(_writer)]
# The same for a live stream: counted against the user's stream connects, and with the token's expiry.
Streamer = Annotated[Bearer, Depends(_streamer)]
AUTHENTICATED = (_reader, _writer, _streamer)


def forbid_other(metrics: Metrics, caller: int, claimed: int | None, what: str) -> int:
    """The caller's id; a 403 if the request names someone else as `what` (author, follower, reader)."""
    if claimed is not None and claimed != caller:
        metrics.auth_rejections.labels("403").inc()
        raise HTTPException(403, f"{what} {claimed} is not the token's user ({caller}): "
                                 "a user reads and writes only as themselves")
    return caller


class EventStream(StreamingResponse):
    """Server-Sent Events whose client must keep taking bytes: a send that waits longer than `send_timeout`
    (a reader that stopped reading, its socket's buffers full) ends the response, and the server closes
    the connection, so a stalled reader holds no task, no queue and no socket for long."""

    def __init__(self, content: AsyncIterator[bytes], send_timeout: float) -> None:
        super().__init__(content, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.send_timeout = send_timeout

    async def stream_response(self, send: Send) -> None:
        async def bounded(message: Message) -> None:
            async with asyncio.timeout(self.send_timeout):  # no task per send, unlike wait_for
                await send(message)

        try:
            await super().stream_response(bounded)
        except TimeoutError:
            return  # incomplete: the server closes the connection
        finally:
            await self.body_iterator.aclose()  # type: ignore[attr-defined]


class BodyLimit:
    """ASGI middleware: a request body over `max_bytes` is a 413 before the app parses it (declared by
    Content-Length or counted while chunks arrive). Bodies here are small, so the body is buffered."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._too_large(scope, receive, send)
            return
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse(status_code=413, content={"error": f"request body over {self.max_bytes} bytes"})
        await response(scope, receive, send)


def security_headers(connect_to: Sequence[str] = ()) -> list[tuple[bytes, bytes]]:
    """The headers of every response. The page loads only its own script and stylesheet and talks only to
    its own origin and the origins in `connect_to` (the ingest API, for the read API's page); the APIs' JSON
    needs nothing at all. No framing (clickjacking), no MIME sniffing, no Referer."""
    connect = " ".join(("'self'", *connect_to))
    return [
        (b"content-security-policy", f"default-src 'none'; script-src 'self'; style-src 'self'; connect-src {connect}; "
                                     "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
                                     .encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"x-frame-options", b"DENY"),  # frame-ancestors for browsers that predate it
    ]


SECURITY_HEADERS = security_headers()


class _HeadAnswered(Exception):
    pass


class SecurityHeaders:
    """ASGI middleware: `headers` (SECURITY_HEADERS unless given) on every response, and HEAD wherever GET is
    (the GET's status and headers, no body; a stream is ended once its headers are out)."""

    def __init__(self, app: ASGIApp, headers: Sequence[tuple[bytes, bytes]] = SECURITY_HEADERS) -> None:
        self.app, self.headers = app, list(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        head = scope["method"] == "HEAD"
        answered = False

        async def send_with_headers(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *self.headers]}
            elif head and message["type"] == "http.response.body":
                if not answered:
                    answered = True
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                if message.get("more_body"):
                    raise _HeadAnswered  # ends a stream, whose body might never end
                return
            await send(message)

        if not head:
            await self.app(scope, receive, send_with_headers)
            return
        try:
            await self.app({**scope, "method": "GET"}, receive, send_with_headers)
        except BaseException:
            if not answered:  # a failure before the answer; once answered, only the body was cut short
                raise


def add_common_routes(app: FastAPI, metrics: Metrics, connect_to: Sequence[str] = ()) -> None:
    """/healthz, /metrics, the JSON error shapes, and the security headers on every answer (a page of this
    app may also connect to the origins in `connect_to`)."""
    headers = security_headers(connect_to)
    # Around the whole stack, the server-error handler included, so a 500 or a 413 carries them too.
    build = app.build_middleware_stack
    app.build_middleware_stack = lambda: SecurityHeaders(build(), headers)  # type: ignore[method-assign]
    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            # Several processes serve this port (uvicorn workers): every one's values, summed.
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # One readable message plus the details; never a traceback, never the offending input echoed
        # back whole (it may be large, or not encodable).
        problems = [f"{'.'.join(str(p) for p in e['loc'][1:]) or e['loc'][0]}: {e['msg']}" for e in exc.errors()]
        detail = [{k: v for k, v in e.items() if k != "input"} for e in exc.errors()]
        detail = jsonable_encoder(detail, custom_encoder={Exception: str})
        return JSONResponse(status_code=422, content={"error": "; ".join(problems), "detail": detail})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Keeps the headers (WWW-Authenticate on a 401). A 405's Allow lists the methods of every route of
        # the path: Starlette names only those of the first route that matched it.
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(_allowed_methods(app, request))
        return JSONResponse(status_code=exc.status_code, content={"error": str(exc.detail)}, headers=headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=500, content={"error": f"internal error: {type(exc).__name__}"})


def _allowed_methods(app: FastAPI, request: Request) -> list[str]:
    methods: set[str] = set()
    for route in app.router.routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        if match is not Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return sorted(methods)
