"""Test helpers for the recording tests: regions and scored results built by hand.

Results come from the real `TemporalSmoother` fed synthetic scores, so the
alert onsets and worst grades the recorder reacts to are the smoother's own.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from pivh_live.frames import Roi, Score
from pivh_live.pipeline.results import FrameResult, RegionFrame
from pivh_live.recording import SessionMeta
from pivh_live.smoothing import TemporalSmoother

META = SessionMeta(
    source_kind="phantom",
    model_name="tiny",
    model_version="0.0.1",
    model_sha256="ab" * 32,
    engine="fake",
    roi=(0, 0, 64, 48),
)


def score_for(grade: int, p: float = 0.96) -> Score:
    """A confident score for ``grade`` (-1: no brain): P(grade) ``p``, the rest 0.01 each."""
    probs = np.full(5, 0.01)
    if grade >= 0:
        probs[grade] = p
    else:
        probs[0] = p
    return Score(probs / probs.sum(), 0.99 if grade >= 0 else 0.01, np.zeros((4, 4), np.float32))


def region_image(seq: int, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A seeded speckle-like gray image with a bright bar that moves with ``seq``."""
    rng = np.random.default_rng(seed * 100_003 + seq)
    h, w = size
    img = rng.integers(20, 90, size=(h, w), dtype=np.uint8)
    x = (seq * 3) % w
    img[:, x : x + 4] = 220
    return img


def stream(
    grades: list[int],
    *,
    fps: float = 30.0,
    size: tuple[int, int] = (48, 64),
    t0_ns: int = 10**12,
    seed: int = 0,
    fading: bool = False,
) -> Iterator[tuple[RegionFrame, FrameResult]]:
    """(region, result) per frame, on capture times ``t0_ns + i / fps``.

    ``fading``: a lesion's score is strongest on its first frame and weakens
    frame by frame, as when a sweep leaves the best view of it.
    """
    smoother = TemporalSmoother()
    roi = Roi(0, 0, size[1], size[0])
    for i, g in enumerate(grades):
        t = t0_ns + round(i * 1e9 / fps)
        region = RegionFrame(i, t, i / fps, region_image(i, size, seed), roi, {"capture": t})
        run = next((k for k in range(i, -1, -1) if grades[k] != g), -1)
        score = score_for(g, 0.96 - 0.01 * (i - run - 1) if fading and g > 0 else 0.96)
        state = smoother.update(t, score, None, i)
        result = FrameResult(i, t, i / fps, score, state, None, roi, {"capture": t, "smooth": t})
        yield region, result


def record_in_real_time(root: str, fps: float = 30.0, seconds: float = 20.0) -> None:
    """Child process of the crash test: record paced frames, print each queued seq."""
    import sys
    import threading
    import time

    from pivh_live.recording import SessionStore
    from pivh_live.recording.recorder import Recorder

    rec = Recorder(META, SessionStore(root), retention=None, min_free_bytes=0)
    print(f"session {rec.session_id}", flush=True)
    grades = [0] * 30 + [3] * round(fps * seconds)
    pace = threading.Event()  # never set: wait() paces like a capture device's frame clock
    start = time.monotonic_ns()
    for region, result in stream(grades, fps=fps, size=(240, 320), t0_ns=start):
        delay = (region.t_capture_ns - time.monotonic_ns()) / 1e9
        if delay > 0:
            pace.wait(delay)
        rec.on_result(region, result)
        print(region.seq, flush=True)
    rec.close()
    sys.exit(0)
