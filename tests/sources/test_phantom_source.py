"""The live phantom source: clips in sequence, determinism, real-time pacing with a fake clock."""

from __future__ import annotations

import numpy as np
import pytest

from pivh_live.errors import SourceError
from pivh_live.sources import create_source
from pivh_live.sources.phantom import PhantomSource

pytest.importorskip("pivh_live.phantom")


class FakeClock:
    def __init__(self) -> None:
        self.t_ns = 5_000_000_000
        self.sleeps: list[float] = []

    def __call__(self) -> int:
        return self.t_ns

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t_ns += round(seconds * 1e9)


def test_clips_follow_each_other_with_running_seq() -> None:
    src = create_source("phantom:?seed=3&grade=3&fps=25&seconds=0.2&pace=fast")
    assert isinstance(src, PhantomSource)
    with src:
        frames, cases = [], []
        for _ in range(8):  # 5 frames per clip: the second clip starts at frame 5
            frame = src.read()
            assert frame is not None
            frames.append(frame)
            cases.append(src.case.case_id)
        info = src.info
    assert [f.seq for f in frames] == list(range(8))
    assert cases == ["live00000"] * 5 + ["live00001"] * 3
    assert [f.media_time_s for f in frames] == pytest.approx(
        [0, 0.04, 0.08, 0.12, 0.16, 0, 0.04, 0.08]
    )
    assert all(f.image.dtype == np.uint8 and f.image.ndim == 2 for f in frames)
    assert (info.kind, info.live, info.fps) == ("phantom", True, 25.0)
    assert (info.height, info.width) == frames[-1].image.shape
    assert src.case.clip_grade == 3


def test_same_seed_same_frames_different_seed_different() -> None:
    def first(seed: int) -> np.ndarray:
        with create_source(f"phantom:?seed={seed}&seconds=0.2&pace=fast") as src:
            frame = src.read()
            assert frame is not None
            return frame.image

    a, b = first(11), first(11)
    np.testing.assert_array_equal(a, b)
    assert a.shape != first(12).shape or not np.array_equal(a, first(12))


def test_realtime_pacing_with_an_injected_clock() -> None:
    clock = FakeClock()
    src = create_source("phantom:?seed=5&fps=10&seconds=0.5", clock=clock, sleep=clock.sleep)
    with src:
        stamps = [src.read().t_capture_ns for _ in range(3)]  # type: ignore[union-attr]
        # Frames are due every 100 ms; rendering took no (fake) time, so the source slept.
        assert np.diff(stamps).tolist() == [100_000_000, 100_000_000]
        # A consumer 350 ms late gets the next frame at once, not skipped, and the
        # timeline restarts from it.
        clock.t_ns += 350_000_000
        n_sleeps = len(clock.sleeps)
        late = src.read()
        after = src.read()
    assert late is not None and after is not None
    assert late.seq == 3 and late.t_capture_ns == stamps[-1] + 350_000_000
    assert len(clock.sleeps) == n_sleeps + 1
    assert after.t_capture_ns - late.t_capture_ns == 100_000_000


def test_screen_frames_carry_the_true_roi() -> None:
    with create_source("phantom:?seed=2&screen=1&seconds=0.2&pace=fast") as src:
        frame = src.read()
        roi = src.roi
    assert frame is not None and roi is not None
    h, w = frame.image.shape
    assert (w, h) in ((1920, 1080), (1280, 720))
    assert roi.x >= 0 and roi.y >= 0 and roi.x + roi.w <= w and roi.y + roi.h <= h


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("phantom:?grade=5", "grade"),
        ("phantom:?fps=0", "fps"),
        ("phantom:?prevalence=rare", "balanced, nicu"),
        ("phantom:clip7", "options only"),
        ("phantom:?colour=1", "unknown option 'colour'"),
    ],
)
def test_bad_phantom_specs(spec: str, needle: str) -> None:
    with pytest.raises(SourceError, match=needle):
        create_source(spec)
