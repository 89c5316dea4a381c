"""A live phantom: synthetic sweeps rendered one after another, in real time.

``phantom:?seed=3&grade=3&screen=1&fps=25&seconds=10&prevalence=balanced``
samples a case per clip (clip k from generator (seed, k)) and renders it frame by
frame (`pivh_live.phantom.ClipRenderer`), so the frame sequence is the
same on every run. Frames are gray uint8; with ``screen=1`` they are a full
scanner screen (1920x1080 or 1280x720, chosen per clip, so the resolution
can switch between clips) with FAKE burned-in identifiers. The next clip's
head model is built in a background thread while the current one plays.
``pace=realtime`` (default) releases frames at the clip's frame rate; a frame
that took too long to render is shown late rather than skipped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from pivh_live.errors import SourceError
from pivh_live.frames import Frame, Roi
from pivh_live.sources.base import Clock, Sleep, Source
from pivh_live.sources.pacing import Pacer
from pivh_live.sources.spec import (
    SourceSpec,
    boolean,
    choice,
    nonnegative_int,
    positive_float,
    take_options,
)

log = logging.getLogger(__name__)


def _grade(raw: str) -> int:
    value = int(raw)
    if not 0 <= value <= 4:
        raise ValueError("must be a Papile grade 0-4")
    return value


OPTIONS = {
    "seed": nonnegative_int,
    "grade": _grade,
    "prevalence": choice("balanced", "nicu", "normal"),
    "screen": boolean,
    "fps": positive_float,
    "seconds": positive_float,
    "pace": choice("realtime", "fast"),
}
DEFAULTS = {"seed": 0, "prevalence": "balanced", "screen": False, "fps": 25.0, "seconds": 10.0}


class PhantomSource(Source):
    kind = "phantom"

    def __init__(
        self,
        spec: str,
        *,
        seed: int = 0,
        grade: int | None = None,
        prevalence: str = "balanced",
        screen: bool = False,
        fps: float = 25.0,
        seconds: float = 10.0,
        pace: str = "realtime",
        clock: Clock = time.monotonic_ns,
        sleep: Sleep = time.sleep,
    ) -> None:
        super().__init__(spec, clock=clock)
        self._seed = seed
        self._grade = grade
        self._prevalence = prevalence
        self._screen = screen
        self._fps = fps
        self._n_frames = max(1, round(seconds * fps))
        self._pacer = Pacer(realtime=pace == "realtime", clock=clock, sleep=sleep, drop_late=False)
        self._pool: ThreadPoolExecutor | None = None
        self._next: Future[Any] | None = None
        self._frames: Iterator[Any] | None = None
        self._clips = 0
        self._index = 0  # frames delivered; the pacing timeline
        self.roi: Roi | None = None  # true image region of the current clip
        self.label: Any = None  # FrameLabel of the last frame delivered
        self.case: Any = None  # CaseSpec of the current clip
        self._shape: tuple[int, int] | None = None

    def _open(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="phantom")
        self._clips = 0
        self._next = self._submit()
        self._pacer.reset()
        self._index = 0

    def _submit(self) -> Future[Any]:
        assert self._pool is not None
        future = self._pool.submit(self._prepare, self._clips)
        self._clips += 1
        return future

    def _prepare(self, clip: int) -> Any:
        """Sample case ``clip`` and build its renderer (the slow head model).

        Each clip has its own generator, so clip k is the same whatever came
        before it and a reopened source starts again at clip 0.
        """
        from pivh_live.phantom import ClipRenderer, sample_case

        spec = sample_case(
            np.random.default_rng((self._seed, clip)),
            self._prevalence,
            case_id=f"live{clip:05d}",
            n_frames=self._n_frames,
            fps=self._fps,
            screen=self._screen,
            grade=self._grade,
        )
        return ClipRenderer(spec)

    def _next_rendered(self) -> Any:
        if self._frames is not None:
            rendered = next(self._frames, None)
            if rendered is not None:
                return rendered
        assert self._pool is not None and self._next is not None
        renderer = self._next.result()
        self._next = self._submit()  # builds while this clip plays
        self.case, self.roi = renderer.spec, renderer.roi
        self._frames = renderer.frames()
        rendered = next(self._frames)
        h, w = rendered.image.shape[:2]
        log.info(
            "phantom clip %s: exam grade %d, %s view, %dx%d",
            self.case.case_id, self.case.clip_grade, self.case.view, w, h,
        )  # fmt: skip
        return rendered

    def _read(self, timeout_s: float | None) -> Frame | None:
        rendered = self._next_rendered()
        self._pacer.admit(self._index / self._fps, 1.0 / self._fps)
        self._index += 1
        self.label = rendered.label
        self._shape = rendered.image.shape[:2]
        return self._stamp(rendered.image, rendered.label.frame / self._fps)

    def _close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = None
        self._next = None
        self._frames = None

    def _geometry(self) -> tuple[int, int, float]:
        if self._shape is None:
            return 0, 0, self._fps
        return self._shape[1], self._shape[0], self._fps


def create(
    spec: SourceSpec, *, clock: Clock = time.monotonic_ns, sleep: Sleep = time.sleep, **_: Any
) -> PhantomSource:
    if spec.target:
        raise SourceError(
            f"phantom takes options only, e.g. phantom:?seed=3&grade=3&screen=1 "
            f"(got {spec.redacted!r})"
        )
    opts = take_options(spec, OPTIONS, {**DEFAULTS, "pace": "realtime"})
    return PhantomSource(spec.text, clock=clock, sleep=sleep, **opts)
