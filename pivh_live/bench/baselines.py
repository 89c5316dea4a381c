"""The two baselines the pipeline is compared with, on the same frames.

- **engine floor** (`engine_floor`): `bench_engine_loop` on the clip's image
  regions, inference only; nothing can be faster than this.
- **naive loop** (`run_naive`): one loop as a user would write it with
  OpenCV: read a frame, cut the (hard-coded) image region, ``cv2.resize``
  to the model input, score it, ``cv2.putText`` the grade on a colour copy.
  Scoring is ``Engine.score_preprocessed``, so a bundle's test-time
  augmentation costs the naive loop what it costs the pipeline and the floor.
  No region detection, letterbox, smoothing, heatmap contour, supervision
  or drop handling. Its stamps reuse the pipeline's names (``preprocess``
  = resize, ``infer``, ``overlay`` = the drawn frame), so `analyze_records`
  reduces both the same way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from pivh_live.bench.engine_loop import bench_engine_loop
from pivh_live.bench.timing import Record
from pivh_live.engines.base import Engine
from pivh_live.frames import Roi
from pivh_live.preprocess import normalize, to_gray
from pivh_live.sources.base import Source

log = logging.getLogger(__name__)


def clip_regions(frames: np.ndarray, roi: Roi, n: int = 16) -> list[np.ndarray]:
    """Up to ``n`` image regions cut from the clip (copies), spread over it."""
    step = max(1, len(frames) // n)
    return [np.ascontiguousarray(roi.crop(np.asarray(f))) for f in frames[::step][:n]]


def engine_floor(
    engine: Engine, regions: Sequence[np.ndarray], n: int, warmup: int = 50
) -> dict[str, Any]:
    """The bare engine loop on ``regions`` (preprocessing excluded): the latency floor."""
    return bench_engine_loop(engine, regions, n=n, warmup=warmup, batch=1)


def run_naive(
    engine: Engine,
    source: Source,
    roi: Roi,
    *,
    max_frames: int | None = None,
    duration_s: float | None = None,
    progress: Callable[[], None] | None = None,
    clock: Callable[[], int] = time.monotonic_ns,
) -> tuple[list[Record], dict[str, Any]]:
    """The naive OpenCV loop on ``source`` until ``max_frames`` or ``duration_s``.

    Returns the per-frame records and counters (frames, source drops).
    """
    import cv2

    size = engine.bundle.input_size
    records: list[Record] = []
    start = clock()
    n = 0
    while True:
        frame = source.read()
        if frame is None:
            break
        region = frame.image[roi.y : roi.y + roi.h, roi.x : roi.x + roi.w]
        small = cv2.resize(region, (size, size))
        x = normalize(to_gray(small), engine.bundle.norm)[None, None]
        t_pre = clock()
        probs = engine.score_preprocessed(x)[0].grade_probs
        t_inf = clock()
        canvas = cv2.cvtColor(region, cv2.COLOR_GRAY2BGR) if region.ndim == 2 else region.copy()
        grade = int(np.argmax(probs))
        text = f"grade {grade}  p(PIVH) {1.0 - float(probs[0]):.2f}"
        cv2.putText(canvas, text, (20, 40), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (0, 0, 255), 2)
        t_draw = clock()
        records.append(
            (frame.seq, {"capture": frame.t_capture_ns, "preprocess": t_pre, "infer": t_inf,
                         "overlay": t_draw})
        )  # fmt: skip
        n += 1
        if progress is not None:
            progress()
        if max_frames is not None and n >= max_frames:
            break
        if duration_s is not None and clock() - start >= duration_s * 1e9:
            break
    counters = {"frames": n, "source_dropped": int(source.stats.dropped),
                "seconds": (clock() - start) / 1e9}  # fmt: skip
    return records, counters
