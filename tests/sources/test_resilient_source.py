"""NO SIGNAL and reconnect with scripted fake sources and an injected clock (no sleeps)."""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise

import numpy as np
import pytest

from pivh_live.errors import SourceError
from pivh_live.frames import Frame
from pivh_live.sources import ResilientSource, Source, SourceStatus, SourceTimeout


class FakeClock:
    """Nanosecond clock that only moves when someone sleeps or waits."""

    def __init__(self) -> None:
        self.t_ns = 1_000_000_000
        self.sleeps: list[float] = []

    def __call__(self) -> int:
        return self.t_ns

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        self.t_ns += round(seconds * 1e9)


class ScriptedSource(Source):
    """Gives ``n_frames`` frames 40 ms apart, then does ``then``:
    "fail" (read error), "stall" (no frames, time passes), "end" (returns None)."""

    kind = "fake"

    def __init__(self, clock: FakeClock, n_frames: int, then: str, *, live: bool = True) -> None:
        super().__init__("fake:", clock=clock)
        self.fake_clock = clock
        self.n_frames = n_frames
        self.then = then
        self._live = live
        self.closed = False

    @property
    def live(self) -> bool:
        return self._live

    def _open(self) -> None:
        pass

    def _read(self, timeout_s: float | None) -> Frame | None:
        if self.stats.frames < self.n_frames:
            self.fake_clock.advance(0.04)
            return self._stamp(np.zeros((4, 4), np.uint8), self.stats.frames * 0.04)
        if self.then == "fail":
            raise SourceError("capture device /dev/video0 stopped delivering frames")
        if self.then == "stall":
            self.fake_clock.advance(timeout_s or 1.0)
            raise SourceTimeout("no frame")
        return None

    def _close(self) -> None:
        self.closed = True

    def _geometry(self) -> tuple[int, int, float]:
        return 4, 4, 25.0


def factory_from(clock: FakeClock, plan: list[object]) -> tuple[Callable[[], Source], list[Source]]:
    """Each call takes the next plan entry: an exception to raise or (n_frames, then)."""
    made: list[Source] = []

    def factory() -> Source:
        step = plan.pop(0)
        if isinstance(step, Exception):
            raise step
        n_frames, then = step  # type: ignore[misc]
        src = ScriptedSource(clock, n_frames, then)
        made.append(src)
        return src

    return factory, made


def collect(src: ResilientSource, n: int) -> list[Frame | SourceStatus | None]:
    return [src.read() for _ in range(n)]


def kinds(items: list[Frame | SourceStatus | None]) -> list[str]:
    return [
        "end" if x is None else (x.state if isinstance(x, SourceStatus) else f"F{x.seq}")
        for x in items
    ]


def test_read_error_then_reconnect() -> None:
    clock = FakeClock()
    factory, made = factory_from(clock, [(3, "fail"), (2, "fail")])
    src = ResilientSource(factory, clock=clock, sleep=clock.sleep)
    items = collect(src, 9)
    assert kinds(items) == [
        "signal", "F0", "F1", "F2", "no_signal", "reconnecting", "signal", "F3", "F4",
    ]  # fmt: skip
    lost = items[4]
    assert isinstance(lost, SourceStatus) and "stopped delivering frames" in lost.message
    assert clock.sleeps == [0.5]
    assert made[0].closed
    frames = [x for x in items if isinstance(x, Frame)]
    assert all(b.t_capture_ns > a.t_capture_ns for a, b in pairwise(frames))


def test_device_vanishes_and_reappears_with_backoff() -> None:
    clock = FakeClock()
    gone = SourceError("capture device /dev/video0 not found; list devices with ...")
    factory, _ = factory_from(clock, [(1, "fail"), gone, gone, gone, gone, (1, "fail")])
    src = ResilientSource(factory, clock=clock, sleep=clock.sleep)
    items = collect(src, 14)
    assert kinds(items) == ["signal", "F0", "no_signal"] + ["reconnecting", "no_signal"] * 4 + [
        "reconnecting", "signal", "F1",
    ]  # fmt: skip
    assert clock.sleeps == [0.5, 1.0, 2.0, 5.0, 5.0]
    statuses = [x for x in items if isinstance(x, SourceStatus)]
    assert [s.t_ns for s in statuses] == sorted(s.t_ns for s in statuses)
    assert "not found" in statuses[3].message


def test_backoff_restarts_after_a_good_frame() -> None:
    clock = FakeClock()
    err = SourceError("down")
    factory, _ = factory_from(clock, [(1, "fail"), err, (1, "fail"), (1, "fail")])
    src = ResilientSource(factory, backoff_s=(1.0, 3.0), clock=clock, sleep=clock.sleep)
    collect(src, 11)
    # loss (1 s), failed open (3 s), success + frame, loss again: back to 1 s
    assert clock.sleeps == [1.0, 3.0, 1.0]


def test_stall_becomes_no_signal_after_stall_s() -> None:
    clock = FakeClock()
    factory, made = factory_from(clock, [(2, "stall"), (1, "stall")])
    src = ResilientSource(factory, stall_s=2.0, poll_s=0.25, clock=clock, sleep=clock.sleep)
    items = collect(src, 4)
    assert kinds(items) == ["signal", "F0", "F1", "no_signal"]
    last = items[2]
    lost = items[3]
    assert isinstance(last, Frame) and isinstance(lost, SourceStatus)
    assert lost.message == "no frame for 2 s"
    assert lost.t_ns - last.t_capture_ns == 2_000_000_000
    assert not made[0].closed  # closed on the next read, so NO SIGNAL is not delayed
    nxt = src.read()
    assert isinstance(nxt, SourceStatus) and nxt.state == "reconnecting"
    assert made[0].closed


def test_first_open_failure_is_no_signal_not_a_crash() -> None:
    clock = FakeClock()
    factory, _ = factory_from(clock, [SourceError("capture device /dev/video9 not found")])
    src = ResilientSource(factory, clock=clock, sleep=clock.sleep)
    status = src.read()
    assert isinstance(status, SourceStatus) and status.state == "no_signal"
    assert status.message == "capture device /dev/video9 not found"
    assert src.info is None


def test_finite_source_end_ends_iteration() -> None:
    clock = FakeClock()
    src = ResilientSource(lambda: ScriptedSource(clock, 2, "end", live=False), clock=clock)
    assert kinds(list(src)) == ["signal", "F0", "F1"]
    assert src.read() is None


def test_live_source_end_is_a_loss() -> None:
    clock = FakeClock()
    factory, _ = factory_from(clock, [(1, "end"), (1, "end")])
    src = ResilientSource(factory, clock=clock, sleep=clock.sleep)
    items = collect(src, 3)
    assert kinds(items) == ["signal", "F0", "no_signal"]
    assert isinstance(items[2], SourceStatus) and items[2].message == "the source ended"


def test_close_closes_inner_and_info_survives() -> None:
    clock = FakeClock()
    factory, made = factory_from(clock, [(5, "fail")])
    with ResilientSource(factory, clock=clock, sleep=clock.sleep) as src:
        collect(src, 2)
    assert made[0].closed
    assert src.info is not None and (src.info.width, src.info.kind) == (4, "fake")


def test_status_rejects_unknown_state() -> None:
    with pytest.raises(ValueError, match="state must be one of"):
        SourceStatus(0, "lost", "x")
