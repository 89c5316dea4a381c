"""V4L2 source with a fake capture object: configuration, newest-frame-wins, loss."""

from __future__ import annotations

import glob
import itertools
import threading

import cv2
import numpy as np
import pytest

from pivh_live.errors import SourceError
from pivh_live.sources import SourceTimeout, open_source
from pivh_live.sources.latest import LatestFrameReader
from pivh_live.sources.spec import parse_spec
from pivh_live.sources.v4l2 import V4l2Source, create

WAIT_S = 5.0  # upper bound for thread hand-offs; normally microseconds


def counter_clock(start: int = 1_000, step: int = 10) -> itertools.count[int]:
    return itertools.count(start, step)


class FakeCapture:
    """Behaves like cv2.VideoCapture on a V4L2 device, driven by the test."""

    def __init__(
        self, n_frames: int, *, size: tuple[int, int] = (64, 48), block_after: bool
    ) -> None:
        self.props: dict[int, float] = {
            cv2.CAP_PROP_FRAME_WIDTH: size[0],
            cv2.CAP_PROP_FRAME_HEIGHT: size[1],
            cv2.CAP_PROP_FPS: 60.0,
        }
        self.calls: list[tuple[int, float]] = []
        self.n_frames = n_frames
        self.block_after = block_after
        self.reads = 0
        self.reached = threading.Event()  # set when the read after the last frame starts
        self.unblock = threading.Event()
        self.released = threading.Event()
        self.fixed_size = False
        self.gate: threading.Semaphore | None = None

    def set(self, prop: int, value: float) -> bool:
        self.calls.append((prop, value))
        if prop in (cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT) and self.fixed_size:
            return False
        self.props[prop] = value
        return True

    def get(self, prop: int) -> float:
        return self.props.get(prop, 0.0)

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self.gate is not None and self.reads < self.n_frames:
            self.gate.acquire(timeout=WAIT_S)
        if self.reads >= self.n_frames:
            self.reached.set()
            if self.block_after:
                self.unblock.wait(WAIT_S)
            return False, None
        self.reads += 1
        w, h = int(self.props[cv2.CAP_PROP_FRAME_WIDTH]), int(self.props[cv2.CAP_PROP_FRAME_HEIGHT])
        return True, np.full((h, w, 3), self.reads, np.uint8)

    def release(self) -> None:
        self.released.set()


def make_source(cap: FakeCapture, **kw: object) -> V4l2Source:
    return V4l2Source(
        "v4l2:/dev/video0",
        "/dev/video0",
        clock=counter_clock().__next__,
        capture_factory=lambda device: cap,
        **kw,  # type: ignore[arg-type]
    )


def test_configures_format_size_rate_and_minimal_buffering() -> None:
    cap = FakeCapture(0, block_after=True)
    src = make_source(cap, width=1920, height=1080, fps=60.0, fmt="mjpeg")
    src.open()
    try:
        props = [p for p, _ in cap.calls]
        assert props == [
            cv2.CAP_PROP_FOURCC,
            cv2.CAP_PROP_FRAME_WIDTH,
            cv2.CAP_PROP_FRAME_HEIGHT,
            cv2.CAP_PROP_FPS,
            cv2.CAP_PROP_BUFFERSIZE,
        ]
        assert cap.calls[0][1] == cv2.VideoWriter.fourcc(*"MJPG")
        assert dict(cap.calls)[cv2.CAP_PROP_BUFFERSIZE] == 1
        info = src.info
        assert (info.width, info.height, info.fps, info.kind, info.live) == (
            1920, 1080, 60.0, "v4l2", True
        )  # fmt: skip
    finally:
        cap.unblock.set()
        src.close()


def test_device_size_wins_over_request(caplog: pytest.LogCaptureFixture) -> None:
    cap = FakeCapture(0, size=(1280, 720), block_after=True)
    cap.fixed_size = True
    src = make_source(cap, width=1920, height=1080)
    with caplog.at_level("WARNING"):
        src.open()
    cap.unblock.set()
    src.close()
    assert (src.info.width, src.info.height) == (1280, 720)
    assert "device gives 1280" in caplog.text


def test_newest_frame_wins_and_drops_are_counted() -> None:
    cap = FakeCapture(5, block_after=True)
    src = make_source(cap)
    src.open()
    try:
        assert cap.reached.wait(WAIT_S)
        frame = src.read(timeout_s=WAIT_S)
        assert frame is not None
        assert int(frame.image[0, 0, 0]) == 5  # the newest of the five
        assert frame.seq == 0
        assert src.stats.dropped == 4
        with pytest.raises(SourceTimeout):
            src.read(timeout_s=0.01)
    finally:
        cap.unblock.set()
        src.close()
    assert cap.released.wait(WAIT_S)


def test_frames_carry_seq_and_capture_time_from_clock() -> None:
    cap = FakeCapture(3, block_after=True)
    cap.gate = threading.Semaphore(0)
    src = make_source(cap)  # clock: 1000 at open, then 1010, 1020, ... per frame
    src.open()
    frames = []
    try:
        for _ in range(3):
            cap.gate.release()  # let exactly one frame through
            frame = src.read(timeout_s=WAIT_S)
            assert frame is not None
            frames.append(frame)
    finally:
        cap.unblock.set()
        src.close()
    assert [f.seq for f in frames] == [0, 1, 2]
    assert [f.t_capture_ns for f in frames] == [1010, 1020, 1030]
    assert [f.media_time_s for f in frames] == pytest.approx([10e-9, 20e-9, 30e-9])
    assert [int(f.image[0, 0, 0]) for f in frames] == [1, 2, 3]
    assert src.stats.dropped == 0 and src.stats.frames == 3


def test_reader_hands_over_producer_end() -> None:
    items: list[tuple[np.ndarray, float] | None] = [(np.zeros((2, 2), np.uint8), 0.0), None]
    reader = LatestFrameReader(lambda: items.pop(0), clock=lambda: 7, name="fake")
    reader.start()
    # The last frame is handed over before the end, whatever the thread timing.
    first = reader.get(WAIT_S)
    assert first is not None and first[2] == 7
    assert reader.get(WAIT_S) is None
    reader.stop(WAIT_S)


def test_vanished_device_raises_one_line_error() -> None:
    cap = FakeCapture(2, block_after=False)
    src = make_source(cap)
    with pytest.raises(SourceError, match="stopped delivering frames") as exc, src:
        for _ in range(10):
            src.read(timeout_s=WAIT_S)
    assert "\n" not in str(exc.value)
    assert cap.released.wait(WAIT_S)


def test_stalled_device_times_out_instead_of_hanging() -> None:
    cap = FakeCapture(0, block_after=True)
    src = make_source(cap, read_timeout_s=0.02)
    src.open()
    try:
        with pytest.raises(SourceTimeout, match="no frame from capture device /dev/video0"):
            src.read()
    finally:
        cap.unblock.set()
        src.close()


def test_create_passes_options() -> None:
    src = create(parse_spec("v4l2:/dev/video3?width=640&height=480&fps=30&format=yuyv"))
    assert src.device == "/dev/video3"
    assert (src.info.width, src.info.height, src.info.fps) == (640, 480, 30.0)


@pytest.mark.capture_hw
@pytest.mark.skipif(not glob.glob("/dev/video*"), reason="no /dev/video* capture device here")
def test_real_capture_device_delivers_frames() -> None:
    device = sorted(glob.glob("/dev/video*"))[0]
    with open_source(f"v4l2:{device}?read_timeout=5") as src:
        frames = [src.read() for _ in range(5)]
    assert all(f is not None and f.image.dtype == np.uint8 for f in frames)
    assert [f.seq for f in frames if f is not None] == [0, 1, 2, 3, 4]
