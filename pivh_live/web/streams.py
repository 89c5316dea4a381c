"""The live page's streams: MJPEG frames (newest first) and server-sent state events.

Why MJPEG over HTTP and not a WebSocket: it needs nothing beyond Starlette
and uvicorn (a WebSocket needs the ``websockets`` or ``wsproto`` package),
it is the format every MJPEG viewer and ``curl`` understand, and TCP flow
control gives per-client back-pressure for free: a client that stops
reading blocks only its own generator, which then skips to the newest frame
when it resumes. The page reads the stream with ``fetch`` (not ``<img>``) so
it can count frames, drop parts it has no time to draw, notice a stall and
reconnect with back-off.

The pipeline thread wakes the server's event loop through `HubWaker` (one
``call_soon_threadsafe`` per result, only while a client is connected);
JPEG encoding runs in worker threads (`FrameHub.jpeg`), never on the
pipeline's thread and never on the event loop.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator

import anyio
import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse

from pivh_live.web.live import FrameHub

BOUNDARY = "pivhframe"
HEARTBEAT_S = 0.5
STATE_MIN_INTERVAL_S = 0.1


class HubWaker:
    """Wakes coroutines on one event loop whenever the hub publishes.

    Each wake replaces the current `asyncio.Event`, so a waiter that took the
    event before checking the hub's version cannot miss a publish.
    """

    def __init__(self, hub: FrameHub, loop: asyncio.AbstractEventLoop) -> None:
        self.hub = hub
        self.loop = loop
        self.event = asyncio.Event()
        self.clients = 0

    def _from_pipeline(self) -> None:
        if self.loop.is_closed():
            self.hub.remove_listener(self._from_pipeline)
            return
        self.loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        event, self.event = self.event, asyncio.Event()
        event.set()

    def attach(self) -> None:
        self.clients += 1
        if self.clients == 1:
            self.hub.add_listener(self._from_pipeline)

    def detach(self) -> None:
        self.clients -= 1
        if self.clients == 0:
            self.hub.remove_listener(self._from_pipeline)

    async def wait(self, event: asyncio.Event, timeout_s: float) -> None:
        with anyio.move_on_after(timeout_s):
            await event.wait()


def waker_for(request: Request, hub: FrameHub) -> HubWaker:
    """The app's waker for the running loop (a restarted server gets a new one)."""
    loop = asyncio.get_running_loop()
    waker: HubWaker | None = getattr(request.app.state, "waker", None)
    if waker is None or waker.loop is not loop:
        waker = HubWaker(hub, loop)
        request.app.state.waker = waker
    return waker


def _stopping(request: Request) -> bool:
    stop: threading.Event | None = getattr(request.app.state, "stopping", None)
    return stop is not None and stop.is_set()


async def mjpeg_frames(request: Request, hub: FrameHub, max_fps: float) -> AsyncIterator[bytes]:
    """Multipart parts, each the newest frame not yet sent to this client."""
    waker = waker_for(request, hub)
    waker.attach()
    try:
        last, next_at = 0, 0.0
        while not _stopping(request) and not hub.closed:
            event = waker.event
            if hub.version == last:
                await waker.wait(event, HEARTBEAT_S)
                continue
            delay = next_at - time.monotonic()
            if delay > 0:
                await anyio.sleep(delay)
            frame = await anyio.to_thread.run_sync(hub.jpeg)
            if frame is None or frame.version == last:
                await waker.wait(event, HEARTBEAT_S)
                continue
            last = frame.version
            next_at = time.monotonic() + 1.0 / max_fps
            head = (
                f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                f"Content-Length: {len(frame.jpeg)}\r\nX-Seq: {frame.seq}\r\n"
                f"X-Version: {frame.version}\r\n\r\n"
            )
            yield head.encode() + frame.jpeg + b"\r\n"
    finally:
        waker.detach()


async def state_events(request: Request, hub: FrameHub) -> AsyncIterator[str]:
    """Server-sent events: the hub state at most 10 times and at least twice a second."""
    waker = waker_for(request, hub)
    waker.attach()
    try:
        yield "retry: 1000\n\n"
        while not _stopping(request):
            event = waker.event
            sent = time.monotonic()
            yield f"data: {json.dumps(hub.state(), separators=(',', ':'))}\n\n"
            await waker.wait(event, HEARTBEAT_S)
            rest = STATE_MIN_INTERVAL_S - (time.monotonic() - sent)
            if rest > 0:
                await anyio.sleep(rest)
    finally:
        waker.detach()


def stream_response(request: Request, hub: FrameHub, max_fps: float) -> StreamingResponse:
    return StreamingResponse(
        mjpeg_frames(request, hub, max_fps),
        media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )


def events_response(request: Request, hub: FrameHub) -> StreamingResponse:
    return StreamingResponse(
        state_events(request, hub),
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )


def state_response(hub: FrameHub) -> JSONResponse:
    return JSONResponse(hub.state())
