"""The live feed page (fanout/static/), served by the read API. It reads and streams the feed from the read
API, its own origin, and writes (posts, follows, read marks) through the ingest API, another origin: the
page learns that API's port from the document, the read API's Content-Security-Policy lets it connect
there (`ingest_origins`), and the ingest API's CORS lets those requests in (fanout/write/api.py).

Signed-in links (`page_url`) carry the bearer token in the fragment, which a browser never sends to a
server; the page moves it into sessionStorage and out of the address bar and history at once."""

from __future__ import annotations

from pathlib import Path as FilePath
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import FastAPI, HTTPException, Path, Response
from fastapi.responses import HTMLResponse

from fanout.settings import Settings

STATIC = FilePath(__file__).resolve().parents[1] / "static"
PAGE = STATIC / "feed.html"
INGEST_PORT_SLOT = "__INGEST_PORT__"  # in feed.html: the page builds the ingest API's URL from it


def page_url(settings: Settings, token: str) -> str:
    """The feed page on this host, signed in with `token` (in the fragment, so it reaches no server log)."""
    return f"http://{settings.client_host}:{settings.read_api_port}/#token={token}"


def ingest_origins(settings: Settings) -> list[str]:
    """Where the page sends its writes: the ingest API's port at the page's own scheme and host (as feed.js
    builds it from `location`), for each origin the page is opened at."""
    origins = []
    for origin in settings.feed_page_origins:
        parts = urlsplit(origin)
        host = parts.hostname or settings.client_host
        netloc = f"[{host}]" if ":" in host else host
        origins.append(f"{parts.scheme or 'http'}://{netloc}:{settings.browser_ingest_port}")
    return list(dict.fromkeys(origins))


def add_page_routes(app: FastAPI, settings: Settings) -> None:
    """`/`, the page (with the ingest API's port filled in), and `/static/<name>.js|css`, its script and style."""

    @app.get("/", include_in_schema=False)
    async def page() -> HTMLResponse:
        # Read on each request, so an edited page shows on reload.
        return HTMLResponse(PAGE.read_text().replace(INGEST_PORT_SLOT, str(settings.browser_ingest_port)))

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: Annotated[str, Path(pattern=r"^[a-z]+\.(js|css)$")]) -> Response:
        path = STATIC / name
        if not path.is_file():
            raise HTTPException(status_code=404, detail=f"no such file: {name}")
        kind = "text/javascript" if name.endswith(".js") else "text/css"
        return Response(path.read_bytes(), media_type=kind)
