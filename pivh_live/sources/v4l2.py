"""V4L2 capture devices (HDMI capture cards, UVC dongles, PCIe cards) via OpenCV.

Only opening and configuring the device is specific here; the newest-frame
thread is `LatestFrameReader`. Tests inject a fake capture object through
``capture_factory``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pivh_live.errors import SourceError
from pivh_live.frames import Frame
from pivh_live.sources.base import DEFAULT_READ_TIMEOUT_S, Clock, Source
from pivh_live.sources.latest import LatestFrameReader
from pivh_live.sources.spec import (
    SourceSpec,
    choice,
    positive_float,
    positive_int,
    take_options,
)

log = logging.getLogger(__name__)

FOURCC = {"mjpeg": "MJPG", "yuyv": "YUYV", "nv12": "NV12"}
OPTIONS = {
    "width": positive_int,
    "height": positive_int,
    "fps": positive_float,
    "format": choice(*FOURCC),
    "read_timeout": positive_float,
}


class Capture(Protocol):
    """The part of ``cv2.VideoCapture`` we use."""

    def set(self, prop: int, value: float) -> bool: ...
    def get(self, prop: int) -> float: ...
    def read(self) -> tuple[bool, np.ndarray | None]: ...
    def release(self) -> None: ...


def open_cv2_capture(device: str) -> Capture:
    if not Path(device).exists():
        raise SourceError(
            f"capture device {device} not found; list devices with "
            "`v4l2-ctl --list-devices` or `ls /dev/video*`"
        )
    import cv2

    cap = cv2.VideoCapture(device, cv2.CAP_V4L2)
    if not cap.isOpened():
        raise SourceError(
            f"cannot open capture device {device}; close other programs using it and check "
            "that your user is in the 'video' group"
        )
    return cap


class V4l2Source(Source):
    kind = "v4l2"

    def __init__(
        self,
        spec: str,
        device: str,
        *,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        fmt: str | None = None,
        read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
        clock: Clock = time.monotonic_ns,
        capture_factory: Callable[[str], Capture] = open_cv2_capture,
    ) -> None:
        super().__init__(spec, clock=clock)
        self.device = device
        self._want = (width, height, fps, fmt)
        self._read_timeout_s = read_timeout_s
        self._factory = capture_factory
        self._geom = (width or 0, height or 0, fps or 0.0)
        self._reader: LatestFrameReader | None = None
        self._cap: Capture | None = None
        self._t0_ns = 0

    def _open(self) -> None:
        cap = self._factory(self.device)
        self._geom = self._configure(cap)
        self._cap = cap
        self._t0_ns = self._clock()
        self._reader = LatestFrameReader(
            self._grab, clock=self._clock, name=f"capture device {self.device}", on_exit=cap.release
        )
        self._reader.start()

    def _configure(self, cap: Capture) -> tuple[int, int, float]:
        import cv2

        width, height, fps, fmt = self._want
        # V4L2 negotiates in this order: pixel format, then size, then rate.
        if fmt is not None:
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*FOURCC[fmt]))
        if width is not None:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        if height is not None:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        if fps is not None:
            cap.set(cv2.CAP_PROP_FPS, fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # fewest driver buffers: lowest latency
        got = (
            int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            float(cap.get(cv2.CAP_PROP_FPS)),
        )
        asked_for = (width, height, fps)
        for name, asked, actual in zip(("width", "height", "fps"), asked_for, got, strict=True):
            if asked is not None and abs(asked - actual) > 0.01 * asked:
                log.warning("%s: asked %s=%s, device gives %s", self.device, name, asked, actual)
        return got

    def _grab(self) -> tuple[Any, float]:
        assert self._cap is not None
        ok, image = self._cap.read()
        if not ok or image is None:
            raise SourceError(
                f"capture device {self.device} stopped delivering frames; "
                "check the HDMI cable and that the scanner output is on"
            )
        return image, 0.0  # media time comes from the capture stamp in _read

    def _read(self, timeout_s: float | None) -> Frame | None:
        assert self._reader is not None
        item = self._reader.get(self._read_timeout_s if timeout_s is None else timeout_s)
        self.stats.dropped = self._reader.dropped
        if item is None:
            raise SourceError(f"capture device {self.device} ended")
        image, _, t_ns = item
        media_time_s = (t_ns - self._t0_ns) / 1e9
        # The image is the truth: the scanner may switch its output resolution.
        self._geom = (image.shape[1], image.shape[0], self._geom[2])
        return self._stamp(image, media_time_s, t_ns)

    def _close(self) -> None:
        if self._reader is not None:
            self._reader.stop(join_timeout_s=self._read_timeout_s + 1.0)
        self._reader = None
        self._cap = None

    def _geometry(self) -> tuple[int, int, float]:
        return self._geom


def create(spec: SourceSpec, *, clock: Clock = time.monotonic_ns, **_: Any) -> V4l2Source:
    opts = take_options(spec, OPTIONS, {})
    return V4l2Source(
        spec.text,
        spec.target,
        width=opts.get("width"),
        height=opts.get("height"),
        fps=opts.get("fps"),
        fmt=opts.get("format"),
        read_timeout_s=opts.get("read_timeout", DEFAULT_READ_TIMEOUT_S),
        clock=clock,
    )
