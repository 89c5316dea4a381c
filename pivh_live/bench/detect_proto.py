"""Prototype, for measurement only: image-region detection off the frame path.

`RegionDetector.update` costs ~7-20 ms per 1080p frame on a small CPU, and
`RegionStage` calls it for every frame before cropping, so it sits on every
frame's latency. `BackgroundDetector` has the same ``update(image) -> Roi |
None`` interface (it plugs into ``RegionStage(detector=...)``) but only
hands a frame to a worker thread running the real detector when the worker
is idle and ``every`` frames have passed, and answers at once with the
newest ROI found for this frame size (None until there is one, and again
after a resolution change, so nothing is sent while the region is unknown,
as now). ``pivh-live bench --roi background`` uses it to show what moving
detection off the frame path would gain; docs/benchmarks.md says what to
change in `pivh_live.region`/`pivh_live.pipeline.stages` to ship it.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from pivh_live.frames import Roi
from pivh_live.region import RegionDetector


class BackgroundDetector:
    def __init__(self, inner: RegionDetector | None = None, every: int = 4) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.inner = inner or RegionDetector()
        self.every = every
        self._lock = threading.Lock()
        self._busy = False
        self._since = every  # frames since the last hand-off: the first frame goes at once
        self._found: tuple[tuple[int, ...], Roi] | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="region-detect")
        self.submitted = 0

    def update(self, image: np.ndarray) -> Roi | None:
        self._since += 1
        with self._lock:
            go = not self._busy and self._since >= self.every
            if go:
                self._busy = True
            found = self._found
        if go:
            self._since = 0
            self.submitted += 1
            # Captured frames are never written to afterwards, so the worker may keep a reference.
            self._pool.submit(self._detect, image)
        if found is None or found[0] != image.shape[:2]:
            return None
        return found[1]

    def _detect(self, image: np.ndarray) -> None:
        roi = None
        try:
            roi = self.inner.update(image)
        finally:
            with self._lock:
                self._busy = False
                if roi is not None:
                    self._found = (image.shape[:2], roi)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
