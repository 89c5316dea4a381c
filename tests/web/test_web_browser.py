"""The pages in a real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright).

One browser for the module. Screenshots go to test-artifacts/ for a person
to look at: live page normal / alert / stale / reconnecting, review list,
session page (video and server-decoded frames).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from web_fakes import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, PhantomClip, Sweep, chromium_or_skip

from pivh_live.recording import SessionStore
from pivh_live.web import FrameHub, LiveDisplay
from pivh_live.web.app import create_app
from pivh_live.web.server import WebServer
from pivh_live.web.timeline import group_findings

TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def context(tmp_path_factory):
    chromium_or_skip()
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1280, "height": 720},
        )
        ctx.set_default_timeout(TIMEOUT_MS)
        yield ctx
        ctx.close()


class Feeder:
    """A 25 fps live source: publishes the current clip's frames to the display until stopped."""

    def __init__(self, display: LiveDisplay, clip: PhantomClip) -> None:
        self.display = display
        self.clip = clip
        self.sweep = Sweep()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import time

        i = 0
        while not self.stop.wait(1 / 25):  # the source's frame period, not a wait for the page
            clip = self.clip
            k = i % len(clip.frames)
            region, result = self.sweep.step(clip.frames[k], clip.grade, clip.masks[k],
                                             t_ns=time.monotonic_ns())  # fmt: skip
            self.display.on_result(region, result)
            i += 1

    def __enter__(self) -> Feeder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def canvas_stats(page) -> dict:
    return page.evaluate(
        """() => {
        const c = document.getElementById('frame');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let lo = 255, hi = 0;
        for (let i = 0; i < d.length; i += 4 * 97) {
            lo = Math.min(lo, d[i]);
            hi = Math.max(hi, d[i]);
        }
        return {w: c.width, h: c.height, lo, hi, frames: window.pivhLive.framesShown};
    }"""
    )


@pytest.fixture
def live_server(clips) -> Iterator[tuple[FrameHub, LiveDisplay, WebServer]]:
    hub = FrameHub(engine="fake", model_version="0.0.0")
    server = WebServer(create_app(hub=hub), "127.0.0.1", 0).start()
    yield hub, LiveDisplay(hub), server
    server.stop()


def test_live_page_shows_frames_and_the_alert_of_a_sweep(context, live_server, clips) -> None:
    from playwright.sync_api import expect

    _, display, server = live_server
    page = context.new_page()
    with Feeder(display, clips[0]) as feeder:
        page.goto(server.url + "/")
        expect(page.locator("#banner-text")).to_have_text("No PIVH detected")
        expect(page.locator("#disclaimer")).to_have_text("RESEARCH USE ONLY - NOT FOR DIAGNOSIS")
        page.wait_for_function("() => window.pivhLive.framesShown >= 3")
        first = canvas_stats(page)
        h, w = clips[0].frames.shape[1:]
        assert (first["w"], first["h"]) == (w, h) and first["hi"] - first["lo"] > 100
        page.wait_for_function(f"() => window.pivhLive.framesShown >= {first['frames'] + 5}")
        seq = int(page.locator("#seq").inner_text())
        page.wait_for_function(f"() => Number(document.getElementById('seq').textContent) > {seq}")
        assert page.locator("#banner").get_attribute("class") == "banner banner-normal"
        expect(page.locator("#grade")).to_have_text("Grade 0")
        expect(page.locator("#conn")).to_have_text("live")
        page.screenshot(path=ARTIFACTS / "web-live-normal.png")

        feeder.clip = clips[3]  # the probe moves onto the haemorrhage
        expect(page.locator("#banner-text")).to_contain_text("PIVH ALERT")
        assert page.locator("#banner").get_attribute("class") == "banner banner-alert"
        expect(page.locator("#grade")).to_have_text("Grade III")
        expect(page.locator("#state")).to_have_text("scoring")
        page.wait_for_function(f"() => window.pivhLive.framesShown >= {first['frames'] + 30}")
        page.screenshot(path=ARTIFACTS / "web-live-alert.png")
    # The source stops: within ~2 s the page says so instead of showing the old image as live.
    expect(page.locator("#banner-text")).to_contain_text("NO NEW IMAGE", timeout=6000)
    expect(page.locator("#stale")).to_be_visible()
    page.screenshot(path=ARTIFACTS / "web-live-stale.png")
    page.close()


def test_live_page_shows_a_recording_notice_beside_the_result(context, live_server, clips) -> None:
    from playwright.sync_api import expect

    hub, display, server = live_server
    notice = {"text": None}
    hub.notice = lambda: notice["text"]
    page = context.new_page()
    with Feeder(display, clips[0]):
        page.goto(server.url + "/")
        expect(page.locator("#banner-text")).to_have_text("No PIVH detected")
        expect(page.locator("#notice")).to_be_hidden()
        notice["text"] = "RECORDING STOPPED: disk full in /data; the session so far is saved"
        expect(page.locator("#notice")).to_have_text(notice["text"])
        expect(page.locator("#banner-text")).to_have_text("No PIVH detected")  # still live
        page.screenshot(path=ARTIFACTS / "web-live-disk-full.png")
    page.close()


def test_live_page_reconnects_after_a_server_restart(context, live_server, clips) -> None:
    from playwright.sync_api import expect

    hub, display, server = live_server
    page = context.new_page()
    with Feeder(display, clips[0]):
        page.goto(server.url + "/")
        expect(page.locator("#banner-text")).to_have_text("No PIVH detected")
        server.stop()
        expect(page.locator("#banner-text")).to_have_text("RECONNECTING")
        expect(page.locator("#conn")).to_contain_text("RECONNECTING")
        expect(page.locator("#stale")).to_be_visible()
        page.screenshot(path=ARTIFACTS / "web-live-reconnecting.png")
        shown = page.evaluate("window.pivhLive.framesShown")
        again = WebServer(create_app(hub=hub), "127.0.0.1", server.port).start()
        try:
            expect(page.locator("#banner-text")).to_have_text("No PIVH detected")
            page.wait_for_function(f"() => window.pivhLive.framesShown > {shown + 3}")
            expect(page.locator("#conn")).to_have_text("live")
            expect(page.locator("#stale")).to_be_hidden()
        finally:
            again.stop()
    page.close()


@pytest.fixture(scope="module")
def review_server(recorded) -> Iterator[tuple[WebServer, SessionStore, str]]:
    store = SessionStore(recorded)
    with WebServer(create_app(store=store), "127.0.0.1", 0) as server:
        yield server, store, store.list_sessions()[0].id


@pytest.mark.parametrize("mode", ["video", "frames"])
def test_review_page_timeline_and_findings_seek_the_player(context, review_server, mode) -> None:
    from playwright.sync_api import expect

    server, store, sid = review_server
    page = context.new_page()
    page.goto(server.url + "/sessions")
    row = page.locator(f'tr[data-session="{sid}"]')
    expect(row).to_contain_text("III")
    if mode == "video":
        page.screenshot(path=ARTIFACTS / "web-review-list.png")
    query = "" if mode == "video" else "?player=frames"
    page.goto(f"{server.url}/sessions/{sid}{query}")
    page.wait_for_function("() => window.pivhPlayer && window.pivhPlayer.ready")
    assert page.evaluate("window.pivhPlayer.mode()") == mode
    # The timeline: both P(PIVH) lines with a point per frame, one alert band, finding marks.
    n = len(list(store.frames(sid)))
    points = page.evaluate("document.querySelector('#timeline-svg .p-smooth').points.length")
    assert points == n
    assert page.locator("#timeline-svg rect.alert-span").count() == 1
    marks = page.locator("#timeline-svg .finding-mark").count()
    # Onset at grade I, then II and III as each level has been held for grade_min_s.
    assert marks == len(group_findings(store.findings(sid))) == 3

    onset = next(f for f in store.findings(sid) if f.kind == "alert_onset")
    page.locator(f'.finding[data-seq="{onset.seq}"]').click()
    page.wait_for_function(f"() => Math.abs(window.pivhPlayer.time() - {onset.t_s}) < 1e-3")
    expect(page.locator("#frame-no")).to_have_text(f"frame {onset.seq}")
    expect(page.locator("#ov-text")).to_have_text("PIVH ALERT - grade I")
    if mode == "video":
        page.wait_for_function("() => document.getElementById('video').readyState >= 2")
    else:
        want = f"t={onset.t_s:.4f}"
        page.wait_for_function(
            "() => { const s = document.getElementById('still');"
            f" return s.complete && s.naturalWidth > 0 && s.src.includes('{want}'); }}"
        )
    shot = ARTIFACTS / f"web-review-session-{mode}.png"

    # A click on the timeline seeks too: the middle of the plot is the middle of the session.
    svg = page.locator("#timeline-svg")
    box = svg.bounding_box()
    width = page.evaluate("() => document.getElementById('timeline-svg').viewBox.baseVal.width")
    scale = box["width"] / width
    margin_l, margin_r = 42, 42  # the plot area's margins in review.js
    svg.click(position={"x": (margin_l + (width - margin_l - margin_r) / 2) * scale, "y": 60})
    duration = store.get(sid).duration_s
    page.wait_for_function(
        f"() => Math.abs(window.pivhPlayer.time() - {duration / 2}) < {duration / 50}"
    )
    page.screenshot(path=shot, full_page=True)
    page.locator("#overlay").uncheck()
    expect(page.locator("#ov")).to_be_hidden()
    page.close()
