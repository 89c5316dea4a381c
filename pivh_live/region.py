"""Find the ultrasound image inside a full scanner screen, and crop to it.

A scanner's HDMI output shows the B-mode image inside its UI: menus, scales,
and burned-in text with the patient's name and ID. The image is the one
large region that keeps changing between frames (speckle texture is the
fallback for a frozen screen); UI chrome is static and text is small.
`RegionDetector` accumulates and holds these cues over frames, removes thin
structures (text, scales, icons) by a morphological opening, takes the
largest remaining region, widens it to the black panel the scanner draws the
image in when there is a clean one, and changes its answer only when a new
box has held for several frames. docs/sources.md has the details.

Privacy: `crop_region` returns a contiguous copy of the ROI, so nothing
downstream of the capture process (engine, recording, transport) ever holds
the full frame with its burned-in identifiers.
"""

from __future__ import annotations

import logging
import re

import numpy as np

from pivh_live.errors import ConfigError
from pivh_live.frames import Roi
from pivh_live.realtime import lower_thread_priority

log = logging.getLogger(__name__)


def parse_roi(text: str) -> Roi:
    """``"x,y,w,h"`` in pixels (the ``--roi`` option) -> `Roi`."""
    parts = re.split(r"\s*[,x:]\s*", text.strip()) if text.strip() else []
    try:
        x, y, w, h = (int(p) for p in parts)
    except ValueError:
        raise ConfigError(
            f"bad ROI {text!r}; write x,y,w,h in pixels, e.g. --roi 320,140,1280,860"
        ) from None
    if x < 0 or y < 0 or w <= 0 or h <= 0:
        raise ConfigError(f"bad ROI {text!r}: x and y must be >= 0, w and h > 0")
    return Roi(x, y, w, h)


def format_roi(roi: Roi) -> str:
    return f"{roi.x},{roi.y},{roi.w},{roi.h}"


def clip_roi(roi: Roi, width: int, height: int) -> Roi | None:
    """The part of ``roi`` inside a ``width`` x ``height`` frame; None if nothing."""
    x0, y0 = max(roi.x, 0), max(roi.y, 0)
    x1, y1 = min(roi.x + roi.w, width), min(roi.y + roi.h, height)
    if x1 <= x0 or y1 <= y0:
        return None
    return Roi(x0, y0, x1 - x0, y1 - y0)


def crop_region(image: np.ndarray, roi: Roi) -> np.ndarray:
    """A contiguous copy of ``roi`` (clipped to the frame); the only pixels to send on."""
    h, w = image.shape[:2]
    clipped = clip_roi(roi, w, h)
    if clipped is None:
        raise ConfigError(
            f"ROI {format_roi(roi)} lies outside the {w}x{h} frame; "
            "remove --roi or the saved profile, or give a ROI inside the frame"
        )
    return np.ascontiguousarray(clipped.crop(image))


def roi_iou(a: Roi, b: Roi) -> float:
    ix = max(0, min(a.x + a.w, b.x + b.w) - max(a.x, b.x))
    iy = max(0, min(a.y + a.h, b.y + b.h) - max(a.y, b.y))
    inter = ix * iy
    union = a.w * a.h + b.w * b.h - inter
    return inter / union if union else 0.0


def _max_edge_shift(a: Roi, b: Roi) -> int:
    return max(
        abs(a.x - b.x),
        abs(a.y - b.y),
        abs((a.x + a.w) - (b.x + b.w)),
        abs((a.y + a.h) - (b.y + b.h)),
    )


def to_gray(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return image
    import cv2

    code = cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY
    return cv2.cvtColor(image, code)


def snap_to_panel(gray: np.ndarray, roi: Roi, black_level: int = 2) -> Roi:
    """The black image panel around ``roi``, if the screen draws one; else ``roi``.

    Many scanners show the image in a black rectangle on a lighter UI
    background. The panel is the black area connected to the image content;
    it is used only when it is a clean rectangle: inside the frame, not
    touching its border, and bounded on every side by a line that is at least
    90% non-black. A black UI background fails that test and keeps ``roi``.
    """
    import cv2

    h, w = gray.shape
    dark = (gray <= black_level).astype(np.uint8)
    dark[roi.y : roi.y + roi.h, roi.x : roi.x + roi.w] = 1
    _, labels = cv2.connectedComponents(dark, connectivity=4)
    comp = labels == labels[roi.y + roi.h // 2, roi.x + roi.w // 2]
    cols, rows = np.nonzero(comp.any(axis=0))[0], np.nonzero(comp.any(axis=1))[0]
    x0, x1, y0, y1 = int(cols[0]), int(cols[-1]) + 1, int(rows[0]), int(rows[-1]) + 1
    if x0 == 0 or y0 == 0 or x1 == w or y1 == h:
        return roi
    edges = (
        dark[y0:y1, x0 - 1],
        dark[y0:y1, x1],
        dark[y0 - 1, x0:x1],
        dark[y1, x0:x1],
    )
    if any(edge.mean() > 0.1 for edge in edges):
        return roi
    return Roi(x0, y0, x1 - x0, y1 - y0)


class RegionDetector:
    """Per-frame ``update(image) -> Roi | None`` with temporal accumulation.

    ``work_width``: the cue maps are kept at this width (full-resolution
    differences averaged down). ``window``: frames each cue is smoothed over.
    ``hold_frames``: a place that showed image content keeps counting for
    about this many frames (half-life), so parts of the image that are dark
    for a while (probe lifted, anechoic fluid) still belong to it.
    ``motion_thresh``/``texture_thresh``: mean absolute gray-level change
    between frames / between neighbouring pixels that counts as content.
    ``min_feature_px``: structures thinner than this (full-resolution pixels:
    text, scales, icons) are removed. ``min_area_frac``: smallest image area.
    ``tol_px``/``confirm_frames``: a new box replaces the current one only
    after ``confirm_frames`` consecutive candidates that each differ by more
    than ``tol_px`` from it and by at most ``tol_px`` from the one before.
    ``snap_panel``: widen the box to the black panel the scanner draws the
    image in, where there is a clean one (`snap_to_panel`).
    A change of frame size resets everything.
    """

    def __init__(
        self,
        *,
        work_width: int = 640,
        window: int = 3,
        hold_frames: int = 75,
        warmup_frames: int = 3,
        motion_thresh: float = 0.6,
        texture_thresh: float = 0.5,
        min_feature_px: int = 40,
        min_area_frac: float = 0.04,
        tol_px: int = 6,
        confirm_frames: int = 4,
        snap_panel: bool = True,
    ) -> None:
        self.work_width = work_width
        self.alpha = 1.0 / max(window, 1)
        self.decay = 0.5 ** (1.0 / max(hold_frames, 1))
        self.warmup_frames = warmup_frames
        self.motion_thresh = motion_thresh
        self.texture_thresh = texture_thresh
        self.min_feature_px = min_feature_px
        self.min_area_frac = min_area_frac
        self.tol_px = tol_px
        self.confirm_frames = confirm_frames
        self.snap_panel = snap_panel
        self.reset()

    def reset(self) -> None:
        self._shape: tuple[int, ...] | None = None
        self._prev: np.ndarray | None = None
        self._smooth: dict[str, np.ndarray] = {}
        self._held: dict[str, np.ndarray] = {}
        self._n = 0
        self._scale = 1.0
        self._roi: Roi | None = None
        self._pending: list[Roi] = []
        self._snap: tuple[Roi, Roi] | None = None  # (content box, its panel)

    @property
    def roi(self) -> Roi | None:
        return self._roi

    def update(self, image: np.ndarray) -> Roi | None:
        """Feed one full frame; the current stable ROI (None until found)."""
        if image.shape[:2] != self._shape:
            if self._shape is not None:
                h, w = image.shape[:2]
                log.info("frame size changed to %dx%d; finding the image again", w, h)
            self.reset()
            self._shape = image.shape[:2]
        shape = self._accumulate(image)
        self._n += 1
        if self._n < self.warmup_frames:
            return self._roi
        candidate = self._candidate(shape)
        if candidate is not None:
            self._settle(candidate)
        return self._roi

    def _accumulate(self, image: np.ndarray) -> tuple[int, int]:
        """Fold this frame's cues into the held maps; returns the work size."""
        import cv2

        gray = to_gray(image)
        h, w = gray.shape
        self._scale = min(1.0, self.work_width / w)
        size = (max(1, round(w * self._scale)), max(1, round(h * self._scale)))
        # Differences are taken at full resolution and only then averaged
        # down, so faint speckle (a few gray levels) is not smoothed away.
        spatial = np.zeros_like(gray)
        cv2.absdiff(gray[:, 1:], gray[:, :-1], dst=spatial[:, 1:])
        self._fold("texture", cv2.resize(spatial, size, interpolation=cv2.INTER_AREA))
        if self._prev is not None:
            change = cv2.absdiff(gray, self._prev)
            self._fold("motion", cv2.resize(change, size, interpolation=cv2.INTER_AREA))
        self._prev = gray.copy()
        return size[1], size[0]

    def _fold(self, name: str, cue: np.ndarray) -> None:
        cue = cue.astype(np.float32)
        smooth = self._smooth.get(name)
        smooth = cue if smooth is None else (1 - self.alpha) * smooth + self.alpha * cue
        held = self._held.get(name)
        self._smooth[name] = smooth
        self._held[name] = smooth if held is None else np.maximum(held * self.decay, smooth)

    def _candidate(self, shape: tuple[int, int]) -> Roi | None:
        # Change is the strong cue: UI chrome, scales and text never change.
        # Texture is the fallback for a scanner frozen from the start; it
        # may take in a depth scale drawn right beside the image.
        box = None
        if "motion" in self._held:
            box = self._largest_region(self._held["motion"] > self.motion_thresh, shape)
        if box is None:
            box = self._largest_region(self._held["texture"] > self.texture_thresh, shape)
        if box is not None and self.snap_panel and self._prev is not None:
            # The panel is static: look for it again only when the content box moved.
            if self._snap is None or _max_edge_shift(box, self._snap[0]) > self.tol_px:
                self._snap = (box, snap_to_panel(self._prev, box))
            box = self._snap[1]
        return box

    def _largest_region(self, cue: np.ndarray, shape: tuple[int, int]) -> Roi | None:
        import cv2

        mask = cue.astype(np.uint8)
        k = max(3, round(self.min_feature_px * self._scale) | 1)
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
        opened = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)  # drops text and icons
        n, labels, stats, _ = cv2.connectedComponentsWithStats(opened, connectivity=8)
        if n <= 1:
            return None
        best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        if stats[best, cv2.CC_STAT_AREA] < self.min_area_frac * shape[0] * shape[1]:
            return None
        core = (labels == best).astype(np.uint8)
        # The opening also cut the image's sharp corners (sector apex and arc
        # ends); take back what is connected to the core in the raw mask, but
        # only near it, so a separate label next to the image stays out.
        _, raw = cv2.connectedComponents(mask, connectivity=8)
        touching = np.unique(raw[core.astype(bool)])
        near = cv2.dilate(core, kernel, iterations=2).astype(bool)
        region = np.isin(raw, touching[touching > 0]) & near
        ys, xs = np.nonzero(region)
        return self._to_full(int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)

    def _to_full(self, x0: int, y0: int, x1: int, y1: int) -> Roi:
        assert self._shape is not None
        h, w = self._shape
        s = self._scale
        fx0, fy0 = max(0, int(np.floor(x0 / s))), max(0, int(np.floor(y0 / s)))
        fx1, fy1 = min(w, int(np.ceil(x1 / s))), min(h, int(np.ceil(y1 / s)))
        return Roi(fx0, fy0, fx1 - fx0, fy1 - fy0)

    def _settle(self, candidate: Roi) -> None:
        if self._roi is not None and _max_edge_shift(candidate, self._roi) <= self.tol_px:
            self._pending.clear()
            return
        if self._pending and _max_edge_shift(candidate, self._pending[-1]) > self.tol_px:
            self._pending.clear()
        self._pending.append(candidate)
        if len(self._pending) >= self.confirm_frames:
            new = self._pending[-1]
            old = format_roi(self._roi) if self._roi else None
            log.info("image region %s (was %s)", format_roi(new), old)
            self._roi = new
            self._pending.clear()


class BackgroundRegionDetector:
    """`RegionDetector` run off the frame path, on a worker thread.

    Detection costs 7-20 ms per 1080p frame on a small CPU; on the frame path
    it would sit on every frame's latency. While no region is known for
    frames of this size (at start and after a frame-size change) ``update``
    runs the detector in the caller, frame by frame, exactly as
    `RegionDetector` would, so no frame is cropped with a stale box and none
    is skipped for want of a worker. Once a region is known ``update`` costs
    microseconds: it hands a frame to the worker when the worker is idle and
    ``every`` frames have passed since the last hand-off, and answers at once
    with the newest region found. The worker keeps a
    reference to the frame it was given: callers must not write into a frame
    after passing it (sources hand out a new array per frame).
    """

    def __init__(self, inner: RegionDetector | None = None, *, every: int = 4) -> None:
        import threading
        from concurrent.futures import ThreadPoolExecutor

        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.inner = inner or RegionDetector()
        self.every = every
        self._lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()
        self._since = 0
        self._found: tuple[tuple[int, ...], Roi] | None = None
        # The worker runs at a lower priority, so frame-path threads that wake up
        # take a core from it first (pivh_live.realtime).
        self._pool = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="region-detect", initializer=lower_thread_priority
        )
        self._closed = False
        self.submitted = 0
        self.failures = 0

    @property
    def roi(self) -> Roi | None:
        found = self._found
        return None if found is None else found[1]

    def update(self, image: np.ndarray) -> Roi | None:
        """The newest ROI for frames of this size (None while unknown)."""
        with self._lock:
            found = self._found
        if found is None or found[0] != image.shape[:2]:
            self._idle.wait()  # the worker never runs beside the caller on the detector
            self._idle.clear()
            self._since = 0
            self._detect(image)
            with self._lock:
                found = self._found
            return found[1] if found is not None and found[0] == image.shape[:2] else None
        self._since += 1
        if not self._closed and self._since >= self.every and self._idle.is_set():
            self._idle.clear()
            self._since = 0
            self.submitted += 1
            self._pool.submit(self._detect, image)
        return found[1]

    def _detect(self, image: np.ndarray) -> None:
        try:
            roi = self.inner.update(image)
        except Exception:  # a detector bug must not stop capture (logged once)
            self.failures += 1
            if self.failures == 1:
                log.exception("image-region detection failed; keeping the last region")
            roi = None
        with self._lock:
            if roi is not None:
                self._found = (image.shape[:2], roi)
            elif self._found is not None and self._found[0] != image.shape[:2]:
                self._found = None
        self._idle.set()

    def wait_idle(self, timeout_s: float | None = None) -> bool:
        """Block until the worker has finished its current frame (for tests and shutdown)."""
        return self._idle.wait(timeout_s)

    def close(self) -> None:
        """Stop handing off frames and wait for the worker to finish."""
        self._closed = True
        self._pool.shutdown(wait=True)
