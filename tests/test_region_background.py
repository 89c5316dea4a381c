"""`BackgroundRegionDetector`: region detection off the frame path.

No test sleeps: the worker is made to wait on events the test sets, and
`wait_idle` waits for it to finish.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from test_region import Scanner, edge_error, run

from pivh_live.frames import Roi
from pivh_live.region import BackgroundRegionDetector, RegionDetector

WAIT_S = 30.0  # generous bound for a blocked worker on a loaded CI machine; never reached


class FakeDetector(RegionDetector):
    """Answers a fixed ROI per frame size after ``warmup`` frames; records calling threads."""

    def __init__(self, rois: dict[tuple[int, int], Roi], warmup: int = 3) -> None:
        super().__init__()
        self.rois = rois
        self.warmup = warmup
        self.calls: list[tuple[int, tuple[int, int], str]] = []
        self.gate: threading.Event | None = None  # when set, the worker waits on it
        self.entered = threading.Event()
        self.fail = False
        self._seen: dict[tuple[int, int], int] = {}

    def update(self, image: np.ndarray) -> Roi | None:
        shape = image.shape[:2]
        self.calls.append((int(image[0, 0]), shape, threading.current_thread().name))
        self.entered.set()
        gate = self.gate
        if gate is not None and threading.current_thread().name.startswith("region-detect"):
            assert gate.wait(WAIT_S)
        if self.fail:
            raise RuntimeError("detector bug")
        self._seen[shape] = self._seen.get(shape, 0) + 1
        return self.rois.get(shape) if self._seen[shape] >= self.warmup else None


def frame(i: int, shape: tuple[int, int] = (72, 128)) -> np.ndarray:
    return np.full(shape, i % 256, np.uint8)


def test_until_a_region_is_known_it_detects_in_the_caller_like_the_plain_detector() -> None:
    roi = Roi(10, 5, 60, 50)
    fake = FakeDetector({(72, 128): roi}, warmup=3)
    bg = BackgroundRegionDetector(fake, every=4)
    try:
        out = [bg.update(frame(i)) for i in range(3)]
        assert out == [None, None, roi]
        assert [c[2] for c in fake.calls] == [threading.current_thread().name] * 3
        assert bg.submitted == 0
    finally:
        bg.close()


def test_once_known_update_answers_at_once_and_hands_off_every_n_frames() -> None:
    roi = Roi(10, 5, 60, 50)
    fake = FakeDetector({(72, 128): roi}, warmup=1)
    bg = BackgroundRegionDetector(fake, every=4)
    try:
        assert bg.update(frame(0)) == roi
        for i in range(1, 13):
            assert bg.update(frame(i)) == roi
            assert bg.wait_idle(WAIT_S)
        worker = [c[0] for c in fake.calls if c[2].startswith("region-detect")]
        assert worker == [4, 8, 12]
    finally:
        bg.close()


def test_a_busy_worker_is_not_queued_and_the_frame_path_never_waits_for_it() -> None:
    roi = Roi(10, 5, 60, 50)
    fake = FakeDetector({(72, 128): roi}, warmup=1)
    bg = BackgroundRegionDetector(fake, every=1)
    try:
        bg.update(frame(0))
        fake.gate = threading.Event()
        fake.entered.clear()
        assert bg.update(frame(1)) == roi  # handed off; the worker now blocks
        assert fake.entered.wait(WAIT_S)
        for i in range(2, 50):  # all answered while the worker is stuck
            assert bg.update(frame(i)) == roi
        assert bg.submitted == 1
        fake.gate.set()
        assert bg.wait_idle(WAIT_S)
    finally:
        bg.close()


def test_a_new_region_found_by_the_worker_replaces_the_old_one() -> None:
    old, new = Roi(10, 5, 60, 50), Roi(20, 10, 40, 40)
    fake = FakeDetector({(72, 128): old}, warmup=1)
    bg = BackgroundRegionDetector(fake, every=1)
    try:
        assert bg.update(frame(0)) == old
        fake.rois[(72, 128)] = new
        assert bg.update(frame(1)) == old  # answered before the worker ran
        assert bg.wait_idle(WAIT_S)
        assert bg.update(frame(2)) == new
    finally:
        bg.close()


def test_a_size_change_gives_none_until_the_region_is_found_in_the_new_size() -> None:
    small, big = (72, 128), (144, 256)
    rois = {small: Roi(10, 5, 60, 50), big: Roi(20, 10, 120, 100)}
    fake = FakeDetector(rois, warmup=2)
    bg = BackgroundRegionDetector(fake, every=2)
    try:
        assert [bg.update(frame(i, small)) for i in range(2)] == [None, rois[small]]
        for i in range(2, 6):
            bg.update(frame(i, small))
        # A stale box is never applied to frames of another size.
        assert bg.update(frame(6, big)) is None
        assert bg.update(frame(7, big)) == rois[big]
    finally:
        bg.close()


def test_a_failing_detector_keeps_the_last_region_and_is_counted() -> None:
    roi = Roi(10, 5, 60, 50)
    fake = FakeDetector({(72, 128): roi}, warmup=1)
    bg = BackgroundRegionDetector(fake, every=1)
    try:
        assert bg.update(frame(0)) == roi
        fake.fail = True
        for i in range(1, 4):
            assert bg.update(frame(i)) == roi
            assert bg.wait_idle(WAIT_S)
        assert bg.failures >= 1
    finally:
        bg.close()


def test_close_stops_hand_offs() -> None:
    roi = Roi(10, 5, 60, 50)
    fake = FakeDetector({(72, 128): roi}, warmup=1)
    bg = BackgroundRegionDetector(fake, every=1)
    bg.update(frame(0))
    bg.close()
    n = len(fake.calls)
    assert bg.update(frame(1)) == roi
    assert len(fake.calls) == n


def test_every_must_be_positive() -> None:
    with pytest.raises(ValueError, match="every"):
        BackgroundRegionDetector(FakeDetector({}), every=0)


def test_on_a_synthetic_scanner_it_finds_the_same_region_as_the_plain_detector() -> None:
    a, b = (Scanner(11, 1280, 720, Roi(300, 80, 660, 560)) for _ in range(2))
    plain = run(RegionDetector(), a, 30)
    bg = BackgroundRegionDetector(every=4)
    try:
        found = None
        for _ in range(30):
            found = bg.update(b.frame())
            assert bg.wait_idle(WAIT_S)
    finally:
        bg.close()
    assert plain is not None and found is not None
    assert edge_error(found, plain) <= 6 and edge_error(found, a.truth) <= 6
