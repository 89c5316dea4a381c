"""The live streams on a real uvicorn server: MJPEG newest-first, state events, slow clients."""

from __future__ import annotations

import fcntl
import json
import re
import socket
import struct
import termios
import threading
import time

import cv2
import httpx
import numpy as np
import pytest
from web_fakes import Sweep, mjpeg_parts

from pivh_live.web import FrameHub, LiveDisplay
from pivh_live.web.app import create_app
from pivh_live.web.server import WebServer


@pytest.fixture
def live():
    hub = FrameHub(engine="fake", model_version="0.0.0")
    server = WebServer(create_app(hub=hub, max_fps=1000.0), "127.0.0.1", 0).start()
    yield hub, LiveDisplay(hub), server
    server.stop()


def test_mjpeg_sends_the_newest_frame_as_jpeg(live, clips) -> None:
    _, display, server = live
    sweep = Sweep()
    for region, result in sweep.play(clips[0], 10):
        display.on_result(region, result)
    with (
        httpx.Client(base_url=server.url, timeout=10) as client,
        client.stream("GET", "/live/stream.mjpg") as response,
    ):
        assert response.headers["content-type"].startswith("multipart/x-mixed-replace")
        parts = mjpeg_parts(response.iter_bytes())
        headers, body = next(parts)
        assert headers["content-type"] == "image/jpeg" and int(headers["x-seq"]) == 9
        image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape[:2] == clips[0].frames.shape[1:]
        for region, result in sweep.play(clips[3], 5):
            display.on_result(region, result)
        seqs = [int(next(parts)[0]["x-seq"])]
        while seqs[-1] != 14:
            seqs.append(int(next(parts)[0]["x-seq"]))
        assert seqs == sorted(seqs) and len(seqs) <= 5  # newer frames only, never a backlog


def _pending(sock: socket.socket) -> int:
    return struct.unpack("i", fcntl.ioctl(sock, termios.FIONREAD, b"\0\0\0\0"))[0]


def test_a_stalled_client_slows_neither_the_pipeline_nor_other_clients(live) -> None:
    _, display, server = live
    rng = np.random.default_rng(5)
    noise = [rng.integers(0, 256, (360, 560), dtype=np.uint8) for _ in range(4)]  # ~200 kB JPEGs
    sweep = Sweep()
    display.on_result(*sweep.step(noise[0], 0))
    stalled = socket.create_connection(("127.0.0.1", server.port))
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    stalled.sendall(b"GET /live/stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    received: list[int] = []
    got = threading.Condition()

    def healthy() -> None:
        with (
            httpx.Client(base_url=server.url, timeout=20) as client,
            client.stream("GET", "/live/stream.mjpg") as response,
        ):
            for headers, _ in mjpeg_parts(response.iter_bytes()):
                with got:
                    received.append(int(headers["x-seq"]))
                    got.notify_all()
                if received[-1] == 399:
                    return

    reader = threading.Thread(target=healthy, daemon=True)
    reader.start()
    times: list[float] = []

    def publish() -> None:
        for i in range(1, 400):
            target = i - 8
            region, result = sweep.step(noise[i % 4], 0)
            t = time.perf_counter()
            display.on_result(region, result)
            times.append(time.perf_counter() - t)
            if i % 8 == 0:  # paced by the healthy display, as a live source would be
                with got:
                    got.wait_for(lambda t=target: received and received[-1] >= t, timeout=5)

    publisher = threading.Thread(target=publish, daemon=True)
    publisher.start()
    publisher.join(60)
    assert not publisher.is_alive(), "on_result blocked"
    reader.join(30)
    try:
        assert received and received[-1] == 399  # the healthy client got the newest frame
        assert _pending(stalled) > 100_000  # the stalled one was fed until its buffers filled
        assert float(np.median(times)) < 1e-3 and max(times) < 0.25
    finally:
        stalled.close()


def test_state_events_push_changes_and_heartbeats(live, clips) -> None:
    _, display, server = live
    sweep = Sweep()
    for region, result in sweep.play(clips[0], 40):
        display.on_result(region, result)
    with (
        httpx.Client(base_url=server.url, timeout=10) as client,
        client.stream("GET", "/live/events") as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = (line for line in response.iter_lines() if line.startswith("data: "))
        first = json.loads(next(lines)[6:])
        assert first["banner"]["text"] == "No PIVH detected" and first["version"] == 40
        heartbeat = json.loads(next(lines)[6:])  # nothing published: still an event
        assert heartbeat["version"] == 40 and heartbeat["frame_age_ms"] >= first["frame_age_ms"]
        for region, result in sweep.play(clips[3], 60):
            display.on_result(region, result)
        state = json.loads(next(lines)[6:])
        while state["version"] < 100:
            state = json.loads(next(lines)[6:])
        assert state["banner"]["text"].startswith("PIVH ALERT") and state["alert"]
    assert httpx.get(server.url + "/live/state").json()["version"] == 100


def test_stop_ends_open_streams_promptly(clips) -> None:
    hub = FrameHub()
    LiveDisplay(hub).on_result(*Sweep().step(clips[0].frames[0], 0))
    server = WebServer(create_app(hub=hub), "127.0.0.1", 0).start()
    client = httpx.Client(base_url=server.url, timeout=10)
    response = client.send(client.build_request("GET", "/live/stream.mjpg"), stream=True)
    next(mjpeg_parts(response.iter_bytes()))
    start = time.monotonic()
    server.stop()
    assert time.monotonic() - start < 3.0 and not server.running
    response.close()
    client.close()


def test_run_display_serves_the_page_and_stops_with_the_pipeline(clips) -> None:
    import io

    from pivh_live.web.server import start_live_display

    console = io.StringIO()
    display = start_live_display(host="127.0.0.1", port=0, engine="fake", console=console)
    url = re.search(r"(http://127\.0\.0\.1:\d+)/", console.getvalue()).group(1)
    assert "token" not in console.getvalue()
    display.on_result(*Sweep().step(clips[0].frames[0], 0))
    assert httpx.get(url + "/live/state").json()["version"] == 1
    display.close()
    assert not display.server.running
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/live/state")
