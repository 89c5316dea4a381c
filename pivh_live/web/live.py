"""The bedside display's side of the pipeline: a newest-frame hub and the `LiveDisplay` consumer.

`LiveDisplay.on_result` only stores references to the newest region and
result under a lock and wakes the waiting web clients: no copying, no
drawing, no encoding, nothing that waits for a browser, so a slow or absent
browser can never slow capture or inference. The web server encodes the
newest frame (overlay by `OverlayRenderer`, then JPEG) in its own worker
threads when a client asks for it, at most once per frame however many
clients ask (`FrameHub.jpeg`); frames that arrive faster than a client takes
them are skipped, never queued.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from pivh_live import DISCLAIMER
from pivh_live.frames import GRADE_NAMES
from pivh_live.overlay import OverlayRenderer, OverlaySettings, banner, format_status_line
from pivh_live.pipeline.results import BaseConsumer, FrameResult, PipelineStatus, RegionFrame

log = logging.getLogger(__name__)

STALE_AFTER_S = 2.0
# What the page calls each banner style (the operator's words, not the code's).
STATE_LABELS = {
    "alert": "scoring",
    "normal": "scoring",
    "no_valid_image": "no valid image",
    "frozen": "frozen",
    "no_signal": "no signal",
    "starting": "starting",
    "restarting": "restarting",
}


@dataclass(frozen=True, eq=False)
class EncodedFrame:
    """The newest frame as JPEG with its overlay; ``version`` counts results published."""

    version: int
    seq: int
    jpeg: bytes
    width: int
    height: int


class FrameHub:
    """Keeps only the newest region, result and status; encodes on demand.

    ``publish``/``publish_status`` are called from the pipeline's thread;
    ``jpeg``, ``state`` and ``wait`` from the web server's threads.
    Listeners (``add_listener``) are called after each publish, outside the
    lock; they must not block (the web app's listener only schedules a
    wake-up on its event loop).
    """

    def __init__(
        self,
        *,
        settings: OverlaySettings | None = None,
        engine: str = "",
        model_version: str = "",
        jpeg_quality: int = 80,
        stale_after_s: float = STALE_AFTER_S,
        clock: Callable[[], int] = time.monotonic_ns,
        window: int = 120,
    ) -> None:
        self.engine = engine
        # What the page should say besides the result (the recorder's warning); called per state.
        self.notice: Callable[[], str | None] | None = None
        self.model_version = model_version
        self.jpeg_quality = int(jpeg_quality)
        self.stale_after_ns = round(stale_after_s * 1e9)
        self._clock = clock
        self._cond = threading.Condition(threading.Lock())
        self._encode_lock = threading.Lock()
        self._renderer = OverlayRenderer(settings)
        self._region: RegionFrame | None = None
        self._result: FrameResult | None = None
        self._status: PipelineStatus | None = None
        self._version = 0
        self._status_version = 0
        self._frame_ns: int | None = None
        self._arrivals: deque[int] = deque(maxlen=window)
        self._latencies: deque[int] = deque(maxlen=window)
        self._listeners: tuple[Callable[[], None], ...] = ()
        self._cached: EncodedFrame | None = None
        self._closed = False
        self.encoded = 0

    # --- pipeline side -----------------------------------------------------------

    def publish(self, region: RegionFrame | None, result: FrameResult) -> None:
        now = self._clock()
        with self._cond:
            if region is not None:
                self._region = region
            self._result = result
            self._version += 1
            self._frame_ns = now
            self._arrivals.append(now)
            self._latencies.append(now - result.t_capture_ns)
            self._cond.notify_all()
            listeners = self._listeners
        self._notify(listeners)

    def publish_status(self, status: PipelineStatus) -> None:
        with self._cond:
            self._status = status
            self._status_version += 1
            self._cond.notify_all()
            listeners = self._listeners
        self._notify(listeners)

    def close(self) -> None:
        """The pipeline stopped: the page says so instead of showing a stale image."""
        with self._cond:
            self._closed = True
            self._status_version += 1
            self._cond.notify_all()
            listeners = self._listeners
        self._notify(listeners)

    def _notify(self, listeners: tuple[Callable[[], None], ...]) -> None:
        for fn in listeners:
            try:
                fn()
            except Exception:  # a broken web loop must never take the pipeline down
                log.exception("display listener failed")

    # --- web side -----------------------------------------------------------------

    def add_listener(self, fn: Callable[[], None]) -> None:
        with self._cond:
            self._listeners = (*self._listeners, fn)

    def remove_listener(self, fn: Callable[[], None]) -> None:
        with self._cond:
            self._listeners = tuple(f for f in self._listeners if f is not fn)

    @property
    def version(self) -> int:
        """Results published so far (bumped by every ``publish``)."""
        with self._cond:
            return self._version

    @property
    def closed(self) -> bool:
        with self._cond:
            return self._closed

    def wait(self, after: int, timeout_s: float) -> int:
        """Block until a result newer than ``after`` (or close, or timeout); the version."""
        with self._cond:
            self._cond.wait_for(lambda: self._version > after or self._closed, timeout_s)
            return self._version

    def jpeg(self) -> EncodedFrame | None:
        """The newest frame with its overlay as JPEG, encoded at most once per version."""
        with self._encode_lock:
            with self._cond:
                version, region, result = self._version, self._region, self._result
                status = self._status
            cached = self._cached
            if cached is not None and cached.version == version:
                return cached
            if region is None or result is None:
                return None
            display = status.display_status if status is not None else None
            line = format_status_line(*self._rates(), self.engine or "-", self.model_version or "-")
            image = self._renderer.render(
                region.image, result.state, result.score, line, display_status=display
            )
            ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
            if not ok:  # cannot happen for a uint8 BGR image; keep the last good frame
                log.warning("JPEG encoding failed for frame %d", region.seq)
                return cached
            h, w = image.shape[:2]
            self._cached = EncodedFrame(version, region.seq, buf.tobytes(), w, h)
            self.encoded += 1
            return self._cached

    def _rates(self, now: int | None = None) -> tuple[float | None, float | None]:
        """(results per second over the last 2 s, median capture-to-display latency in ms)."""
        with self._cond:
            arrivals = list(self._arrivals)
            latencies = list(self._latencies)
        now = self._clock() if now is None else now
        recent = [t for t in arrivals if now - t <= 2_000_000_000]
        fps = None
        if len(recent) >= 2 and recent[-1] > recent[0]:
            fps = (len(recent) - 1) / ((recent[-1] - recent[0]) / 1e9)
        latency = float(np.median(latencies[-30:])) / 1e6 if latencies else None
        return fps, latency

    def state(self, now: int | None = None) -> dict[str, Any]:
        """What the page's banner and side panel show, as plain JSON values."""
        now = self._clock() if now is None else now
        with self._cond:
            version, status_version = self._version, self._status_version
            region, result, status = self._region, self._result, self._status
            frame_ns, closed = self._frame_ns, self._closed
        fps, latency = self._rates(now)
        display = status.display_status if status is not None else None
        lstate = result.state if result is not None else None
        key, text = banner(lstate, display)
        scoring = display is None and lstate is not None and lstate.status == "scoring"
        age_ms = None if frame_ns is None else (now - frame_ns) / 1e6
        stale = frame_ns is not None and now - frame_ns > self.stale_after_ns
        label = STATE_LABELS[key]
        if result is None:
            key, text, label = "starting", "WAITING FOR IMAGES", "waiting"
        if closed:
            key, text, label = "no_signal", "STOPPED", "stopped"
        grade = lstate.grade if scoring and lstate is not None else None
        return {
            "version": version,
            "status_version": status_version,
            "seq": None if result is None else int(result.seq),
            "image_seq": None if region is None else int(region.seq),
            "banner": {"key": key, "text": text},
            "state": label,
            "alert": bool(scoring and lstate is not None and lstate.alert),
            "grade": None if grade is None else GRADE_NAMES[grade],
            "p_pivh": _finite(lstate.p_pivh) if scoring and lstate is not None else None,
            "worst_grade": None if lstate is None else GRADE_NAMES[lstate.worst_grade],
            "source": None if status is None else status.source_message,
            "fps": None if fps is None else round(fps, 1),
            "latency_ms": None if latency is None else round(latency, 1),
            "frame_age_ms": None if age_ms is None else round(age_ms),
            "stale": bool(stale and not closed),
            "stale_after_ms": self.stale_after_ns // 1_000_000,
            "engine": self.engine,
            "model_version": self.model_version,
            "notice": self._notice(),
            "disclaimer": DISCLAIMER,
        }

    def _notice(self) -> str | None:
        if self.notice is None:
            return None
        try:
            text = self.notice()
        except Exception:  # a broken provider must not break the page's state
            log.exception("the display notice provider failed")
            return None
        return str(text) if text else None


def _finite(value: float) -> float | None:
    return round(float(value), 3) if math.isfinite(value) else None


class LiveDisplay(BaseConsumer):
    """`ResultConsumer` for the live page: hands each region and result to a `FrameHub`.

    ``server`` (anything with ``stop()``, e.g. the `WebServer` serving the
    hub) is stopped by ``close`` when the pipeline ends.
    """

    needs_frames = True

    def __init__(self, hub: FrameHub, server: Any | None = None) -> None:
        self.hub = hub
        self.server = server

    def on_result(self, region: RegionFrame | None, result: FrameResult) -> None:
        self.hub.publish(region, result)

    def on_status(self, status: PipelineStatus) -> None:
        self.hub.publish_status(status)

    def close(self) -> None:
        self.hub.close()
        if self.server is not None:
            self.server.stop()
