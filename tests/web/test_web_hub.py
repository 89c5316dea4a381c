"""FrameHub / LiveDisplay: newest-only storage, lazy shared encoding, state, staleness."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest
from web_fakes import Sweep

from pivh_live import DISCLAIMER
from pivh_live.pipeline.results import PipelineStatus, ResultConsumer
from pivh_live.web import FrameHub, LiveDisplay


class Clock:
    def __init__(self) -> None:
        self.now = 10**12

    def __call__(self) -> int:
        return self.now


def feed(display: LiveDisplay, sweep: Sweep, clips, grade: int, n: int) -> None:
    for region, result in sweep.play(clips[grade], n):
        display.on_result(region, result)


def test_display_is_a_frame_consumer() -> None:
    display = LiveDisplay(FrameHub())
    assert isinstance(display, ResultConsumer)
    assert display.needs_frames is True


def test_hub_keeps_only_the_newest_and_encodes_it_once(clips) -> None:
    hub = FrameHub()
    display = LiveDisplay(hub)
    sweep = Sweep()
    assert hub.jpeg() is None
    feed(display, sweep, clips, 0, 30)
    assert hub.version == 30
    assert hub.encoded == 0  # nothing is drawn or encoded on the pipeline's call
    first = hub.jpeg()
    again = hub.jpeg()
    assert first is again and hub.encoded == 1
    assert first.seq == 29 and first.version == 30
    image = cv2.imdecode(np.frombuffer(first.jpeg, np.uint8), cv2.IMREAD_COLOR)
    h, w = clips[0].frames.shape[1:]
    assert image.shape == (h, w, 3) and (first.width, first.height) == (w, h)
    # The overlay is drawn: the banner rows are green ("No PIVH detected"), not ultrasound gray.
    banner = image[:20].reshape(-1, 3).mean(axis=0)
    assert banner[1] > banner[2] + 60 and banner[1] > banner[0] + 60
    feed(display, sweep, clips, 0, 5)
    assert hub.jpeg().seq == 34 and hub.encoded == 2


def test_concurrent_clients_share_one_encoding(clips) -> None:
    hub = FrameHub()
    display = LiveDisplay(hub)
    feed(display, Sweep(), clips, 0, 3)
    results = []
    threads = [threading.Thread(target=lambda: results.append(hub.jpeg())) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert hub.encoded == 1 and len({id(r) for r in results}) == 1


def test_state_follows_the_sweep_from_normal_to_alert(clips) -> None:
    hub = FrameHub(engine="fake", model_version="9.9")
    display = LiveDisplay(hub)
    sweep = Sweep()
    assert hub.state()["banner"]["text"] == "WAITING FOR IMAGES"
    feed(display, sweep, clips, 0, 40)
    s = hub.state()
    assert s["banner"] == {"key": "normal", "text": "No PIVH detected"}
    assert s["state"] == "scoring" and s["grade"] == "0" and s["alert"] is False
    assert s["disclaimer"] == DISCLAIMER and s["engine"] == "fake"
    feed(display, sweep, clips, 3, 50)
    s = hub.state()
    assert s["alert"] is True and s["banner"]["key"] == "alert"
    assert s["banner"]["text"].startswith("PIVH ALERT") and s["grade"] in ("I", "II", "III")
    assert s["p_pivh"] > 0.5 and s["seq"] == 89


def test_pipeline_status_overrides_the_banner(clips) -> None:
    hub = FrameHub()
    display = LiveDisplay(hub)
    feed(display, Sweep(), clips, 3, 40)
    display.on_status(PipelineStatus(1, "no_signal", "no frames"))
    s = hub.state()
    assert s["banner"] == {"key": "no_signal", "text": "NO SIGNAL"}
    assert s["state"] == "no signal" and s["alert"] is False and s["grade"] is None
    display.on_status(PipelineStatus(2, "signal", "ok", (("inference", "restarting"),)))
    assert hub.state()["state"] == "restarting"
    display.close()
    assert hub.state()["banner"]["text"] == "STOPPED" and hub.closed


def test_stale_after_two_seconds_without_a_frame(clips) -> None:
    clock = Clock()
    hub = FrameHub(clock=clock)
    display = LiveDisplay(hub)
    sweep = Sweep()
    for i in range(25):
        clock.now += 40_000_000
        region, result = sweep.step(clips[0].frames[i % 6], 0)
        display.on_result(region, result)
    s = hub.state()
    assert not s["stale"] and s["fps"] == pytest.approx(25.0, rel=1e-6)
    clock.now += 1_900_000_000
    assert not hub.state()["stale"]
    clock.now += 200_000_000
    s = hub.state()
    assert s["stale"] and s["frame_age_ms"] == 2100


def test_latency_is_capture_to_display(clips) -> None:
    clock = Clock()
    hub = FrameHub(clock=clock)
    sweep = Sweep()
    for _ in range(10):
        region, result = sweep.step(clips[0].frames[0], 0, t_ns=clock.now)
        clock.now += 7_000_000  # arrives 7 ms after capture
        hub.publish(region, result)
        clock.now += 33_000_000
    assert hub.state()["latency_ms"] == pytest.approx(7.0)


def test_a_failing_listener_never_reaches_the_pipeline(clips) -> None:
    hub = FrameHub()
    calls = []

    def broken() -> None:
        calls.append(1)
        raise RuntimeError("event loop is closed")

    hub.add_listener(broken)
    LiveDisplay(hub).on_result(*Sweep().step(clips[0].frames[0], 0))
    assert calls == [1] and hub.version == 1
    hub.remove_listener(broken)
    LiveDisplay(hub).on_result(*Sweep().step(clips[0].frames[0], 0))
    assert calls == [1]


def test_wait_returns_on_publish_and_on_timeout(clips) -> None:
    hub = FrameHub()
    start = time.monotonic()
    assert hub.wait(0, 0.05) == 0
    assert time.monotonic() - start >= 0.04
    timer = threading.Timer(0.05, lambda: hub.publish(*Sweep().step(clips[0].frames[0], 0)))
    timer.start()
    assert hub.wait(0, 5.0) == 1
    timer.join()


def test_on_result_is_cheap_without_clients(clips) -> None:
    hub = FrameHub()
    display = LiveDisplay(hub)
    pairs = list(Sweep().play(clips[0], 300))
    times = []
    for region, result in pairs:
        t = time.perf_counter()
        display.on_result(region, result)
        times.append(time.perf_counter() - t)
    assert np.median(times) < 1e-3 and hub.encoded == 0


def test_state_carries_the_recorders_notice_and_survives_a_broken_provider(clips) -> None:
    hub = FrameHub()
    display = LiveDisplay(hub)
    feed(display, Sweep(), clips, 0, 3)
    assert hub.state()["notice"] is None
    warning = {"text": None}
    hub.notice = lambda: warning["text"]
    assert hub.state()["notice"] is None
    warning["text"] = "RECORDING STOPPED: disk full in /data; the session so far is saved"
    state = hub.state()
    assert state["notice"] == warning["text"]

    def broken() -> str:
        raise RuntimeError("bug")

    hub.notice = broken
    assert hub.state()["notice"] is None
