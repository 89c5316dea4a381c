"""The Starlette app: the live page (with a `FrameHub`) and the review pages (with a store).

``create_app(hub=..., store=..., token=...)``: either part may be absent
(``pivh-live review`` has no hub). ``token`` None means a loopback-only
server (`auth.SecurityMiddleware` then checks the Host header); pass a token
for any other bind. Endpoints are listed in docs/web.md.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from pivh_live.web import streams
from pivh_live.web.auth import SecurityMiddleware
from pivh_live.web.live import FrameHub
from pivh_live.web.pages import STATIC, fill, message_page, page

log = logging.getLogger(__name__)

DEFAULT_MAX_FPS = 30.0


def create_app(
    *,
    hub: FrameHub | None = None,
    store: Any | None = None,
    token: str | None = None,
    allowed_hosts: tuple[str, ...] | None = None,
    max_fps: float = DEFAULT_MAX_FPS,
    cards: Any | None = None,
) -> Starlette:
    """The web app. ``store`` is a `pivh_live.recording.SessionStore` (or one with its API);
    ``cards`` maps a session's model record to its card (see `review.CardFinder`)."""
    if max_fps <= 0:
        raise ValueError(f"max_fps must be > 0, got {max_fps}")
    routes: list[BaseRoute] = [Route("/", _home)]
    if hub is not None:
        routes += _live_routes(hub, max_fps)
    if store is not None:
        from pivh_live.web.review import review_routes

        routes += review_routes(store, cards)
    routes.append(Mount("/static", app=StaticFiles(directory=STATIC), name="static"))
    app = Starlette(
        routes=routes,
        middleware=[Middleware(SecurityMiddleware, token=token, allowed_hosts=allowed_hosts)],
        exception_handlers={HTTPException: _http_error},
        max_body_size=64 * 1024,
    )
    app.state.hub = hub
    app.state.store = store
    app.state.stopping = threading.Event()
    return app


def _live_routes(hub: FrameHub, max_fps: float) -> list[BaseRoute]:
    async def stream(request: Request) -> Response:
        return streams.stream_response(request, hub, max_fps)

    async def events(request: Request) -> Response:
        return streams.events_response(request, hub)

    async def state(request: Request) -> Response:
        return streams.state_response(hub)

    return [
        Route("/live/stream.mjpg", stream),
        Route("/live/events", events),
        Route("/live/state", state),
    ]


async def _home(request: Request) -> Response:
    if request.app.state.hub is None:
        if request.app.state.store is None:
            return message_page("Nothing to show", "this server has no live display", 404)
        return RedirectResponse("/sessions", status_code=303)
    return page(
        "Live",
        fill("live.html"),
        css=("live.css",),
        js=("live.js",),
        body_class="live",
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    text = exc.detail if isinstance(exc.detail, str) else "error"
    if request.url.path.startswith(("/api/", "/live/")):
        return JSONResponse({"error": text}, status_code=exc.status_code)
    return message_page(f"Error {exc.status_code}", text, exc.status_code)
