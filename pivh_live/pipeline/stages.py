"""The pipeline's stages as plain classes with one per-frame method; no sockets here.

    region = RegionStage(roi=parse_roi("320,140,1280,860"))
    inference = InferenceStage(engine, smoothing_config(engine.bundle))
    rf = region.process(frame)            # RegionFrame | None (no ROI known yet)
    result = inference.process(rf)        # FrameResult
    image = OverlayStage().render(rf, result)

The same objects run in one loop (`pivh_live.pipeline.single`), in separate
processes joined by ZeroMQ (`pivh_live.pipeline.processes`) and offline in
`analyze`, so every mode computes exactly the same results.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import cv2
import numpy as np

from pivh_live.frames import Frame, Roi
from pivh_live.pipeline.results import FrameResult, RegionFrame
from pivh_live.preprocess import preprocess, to_gray
from pivh_live.region import (
    BackgroundRegionDetector,
    RegionDetector,
    clip_roi,
    crop_region,
    format_roi,
)
from pivh_live.smoothing import SmoothingConfig, TemporalSmoother

if TYPE_CHECKING:
    from pivh_live.bundle import ModelBundle
    from pivh_live.engines import Engine
    from pivh_live.overlay import OverlaySettings

log = logging.getLogger(__name__)

Clock = Callable[[], int]
TIME_BASES = ("capture", "media")


def smoothing_config(bundle: ModelBundle) -> SmoothingConfig:
    """The smoother settings for a bundle: its operating thresholds, as `evaluate` uses them."""
    t = bundle.thresholds
    return SmoothingConfig.from_thresholds(t["pivh"], t["severe"], t["valid"])


def region_motion(gray: np.ndarray, previous: np.ndarray | None) -> float | None:
    """Mean absolute gray difference (evaluation.frame_motion); None without a same-size previous.

    cv2.absdiff on uint8 gives the exact |a - b|, and cv2.sumElems adds
    integers in float64 exactly (sums stay far below 2**53), so this equals
    frame_motion to the bit; it is ~6x faster than numpy's float64 mean,
    which converts the whole region first (0.03 vs 0.19 ms at 944x548).
    """
    if previous is None or previous.shape != gray.shape:
        return None
    diff = cv2.absdiff(gray, previous)
    return float(cv2.sumElems(diff)[0]) / diff.size


class RegionStage:
    """Full captured frame -> `RegionFrame` holding only the cropped image region.

    ROI precedence: ``roi`` (``--roi``), then the ``profile``'s ROI for the
    frame's resolution, then auto-detection (`RegionDetector`) when ``auto``,
    else the whole frame. ``process`` returns None while no ROI is known
    (nothing must go downstream then: never the full screen) and counts it in
    ``skipped``. ``background``: run auto-detection on a worker thread
    (`BackgroundRegionDetector`), off the frame path; the live modes use it,
    `analyze` does not (its results must not depend on thread timing).
    Call ``close`` when done.
    """

    def __init__(
        self,
        *,
        roi: Roi | None = None,
        profile: str | None = None,
        auto: bool = True,
        detector: RegionDetector | BackgroundRegionDetector | None = None,
        background: bool = False,
        clock: Clock = time.monotonic_ns,
    ) -> None:
        from pivh_live.profiles import load_profile

        self.fixed = roi
        self.auto = auto
        self._profile = load_profile(profile) if profile else {}
        if detector is None and auto:
            detector = BackgroundRegionDetector() if background else RegionDetector()
        self._detector = detector
        self._clock = clock
        self._warned: set[tuple[int, int]] = set()
        self.roi: Roi | None = None
        self.skipped = 0

    def process(self, frame: Frame) -> RegionFrame | None:
        roi = self._roi_for(frame.image)
        if roi is None:
            self.skipped += 1
            return None
        if roi != self.roi:
            log.debug("image region %s", format_roi(roi))
        self.roi = roi
        image = crop_region(frame.image, roi)
        if np.may_share_memory(image, frame.image):
            # crop_region returns the frame itself when the ROI covers all of it.
            image = image.copy()
        stamps = {"capture": frame.t_capture_ns, "crop": self._clock()}
        return RegionFrame(frame.seq, frame.t_capture_ns, frame.media_time_s, image, roi, stamps)

    def close(self) -> None:
        """Stop a background detector's worker (no-op otherwise)."""
        if isinstance(self._detector, BackgroundRegionDetector):
            self._detector.close()

    def _roi_for(self, image: np.ndarray) -> Roi | None:
        h, w = image.shape[:2]
        roi = self.fixed or self._profile.get(f"{w}x{h}")
        if roi is not None:
            clipped = clip_roi(roi, w, h)
            if clipped is None and (w, h) not in self._warned:
                self._warned.add((w, h))
                log.warning(
                    "ROI %s lies outside the %dx%d frame; nothing sent", format_roi(roi), w, h
                )
            return clipped
        if self._detector is not None:
            return self._detector.update(image)
        return Roi(0, 0, w, h)


class InferenceStage:
    """`RegionFrame` -> `FrameResult`: preprocess, engine, motion, temporal smoothing.

    ``time_base`` "capture" feeds the smoother the capture stamps (live);
    "media" feeds it the frame's media time (offline analysis of a file, so
    results do not depend on how fast the file was decoded). Stamps added:
    "preprocess", "infer", "smooth" (each when that step finished).
    """

    def __init__(
        self,
        engine: Engine,
        config: SmoothingConfig | None = None,
        *,
        time_base: str = "capture",
        clock: Clock = time.monotonic_ns,
    ) -> None:
        if time_base not in TIME_BASES:
            raise ValueError(f"time_base must be one of {TIME_BASES}, got {time_base!r}")
        self.engine = engine
        self.config = config or smoothing_config(engine.bundle)
        self.smoother = TemporalSmoother(self.config)
        self.time_base = time_base
        self._clock = clock
        self._previous: np.ndarray | None = None
        self._last_t: int | None = None

    def reset(self) -> None:
        """A new exam: forget the smoother's state and the previous region."""
        self.smoother.reset()
        self._previous = None
        self._last_t = None

    def process(self, region: RegionFrame) -> FrameResult:
        return self.process_batch([region])[0]

    def process_batch(self, regions: Sequence[RegionFrame]) -> list[FrameResult]:
        """Score several regions in one engine call, then smooth them in order."""
        if not regions:
            return []
        bundle = self.engine.bundle
        size, fit, norm = bundle.input_size, bundle.fit, bundle.norm
        grays = [to_gray(r.image) for r in regions]
        batch = np.empty((len(grays), 1, size, size), dtype=np.float32)
        for i, gray in enumerate(grays):
            preprocess(gray, size, out=batch[i], fit=fit, norm=norm)
        t_pre = self._clock()
        scores = self.engine.score_preprocessed(batch)
        t_inf = self._clock()
        results = []
        for region, gray, score in zip(regions, grays, scores, strict=True):
            motion = region_motion(gray, self._previous)
            self._previous = gray
            state = self.smoother.update(self._time_ns(region), score, motion, region.seq)
            stamps = {**region.stamps, "preprocess": t_pre, "infer": t_inf, "smooth": self._clock()}
            results.append(
                FrameResult(
                    region.seq,
                    region.t_capture_ns,
                    region.media_time_s,
                    score,
                    state,
                    motion,
                    region.roi,
                    stamps,
                )
            )
        return results

    def _time_ns(self, region: RegionFrame) -> int:
        if self.time_base == "media":
            # As summarize_clip converts media seconds, so both agree to the bit.
            t = round(region.media_time_s * 1e9)
        else:
            t = region.t_capture_ns
        if self._last_t is not None and t < self._last_t:
            # A restarted capture process or a file whose timestamps jump back:
            # the smoother would reject it, so start a new segment.
            log.warning("frame %d is earlier than the previous one; smoothing restarts", region.seq)
            self.smoother.reset()
            self._previous = None
        self._last_t = t
        return t


class OverlayStage:
    """`RegionFrame` + `FrameResult` -> annotated BGR copy of the region (`OverlayRenderer`)."""

    def __init__(self, settings: OverlaySettings | None = None) -> None:
        from pivh_live.overlay import OverlayRenderer

        self.renderer = OverlayRenderer(settings)

    def render(
        self,
        region: RegionFrame,
        result: FrameResult | None,
        status_line: str | None = None,
        display_status: str | None = None,
    ) -> np.ndarray:
        state = result.state if result is not None else None
        score = result.score if result is not None else None
        return self.renderer.render(region.image, state, score, status_line, display_status)
