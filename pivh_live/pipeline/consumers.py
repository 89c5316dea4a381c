"""Result consumers: a JSON-lines writer, a status reporter, a callback adapter, an overlay video.

Each implements the `ResultConsumer` protocol (`pivh_live.pipeline.results`);
the web display and the recorder plug in the same way.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from pivh_live.errors import RecordingError
from pivh_live.pipeline.results import BaseConsumer, FrameResult, PipelineStatus, RegionFrame

if TYPE_CHECKING:
    from pivh_live.overlay import OverlaySettings

log = logging.getLogger(__name__)

FRAMES_FILE = "frames.jsonl"


def frame_record(result: FrameResult, live: bool = False) -> dict[str, Any]:
    """One frames.jsonl line (schema in docs/analyze.md).

    ``grade`` is the smoothed displayed grade, 0 where the display shows none
    (``status`` "starting" or "no_valid_image"); ``p_pivh``, ``grade_probs``,
    ``p_valid`` are the model's own per-frame outputs. ``live`` adds the
    capture stamp, the capture-to-result latency and every stage stamp.
    """
    s, score = result.state, result.score
    record: dict[str, Any] = {
        "frame": int(result.seq),
        "t": float(result.media_time_s),
        "valid": bool(s.valid),
        "p_pivh": float(score.p_pivh),
        "grade_probs": [float(p) for p in score.grade_probs],
        "grade": int(s.grade) if s.grade is not None else 0,
        "alert": bool(s.alert),
        "status": s.status,
        "p_valid": float(score.p_valid),
        "p_pivh_smoothed": float(s.p_pivh),
        "motion": result.motion,
    }
    if live:
        latency = result.latency_ns
        record["t_capture_ns"] = int(result.t_capture_ns)
        record["latency_ms"] = None if latency is None else round(latency / 1e6, 3)
        # Where the time went: each stage's finish, in ms after capture.
        record["stamps_ms"] = {
            k: round((v - result.t_capture_ns) / 1e6, 3) for k, v in result.stamps.items()
        }
    return record


class JsonlResultWriter(BaseConsumer):
    """Appends one `frame_record` per result to ``path`` (frames.jsonl)."""

    def __init__(self, path: str | Path, *, live: bool = False, flush_every: int = 25) -> None:
        self.path = Path(path)
        self.live = live
        self.flush_every = max(1, flush_every)
        self.written = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file: IO[str] | None = open(self.path, "w", encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            raise RecordingError(
                f"cannot write {self.path}: {exc.strerror}; choose a writable output directory"
            ) from None

    def on_result(self, region: RegionFrame | None, result: FrameResult) -> None:
        if self._file is None:
            return
        line = json.dumps(frame_record(result, self.live), separators=(",", ":"), allow_nan=False)
        try:
            self._file.write(line + "\n")
            self.written += 1
            # Flushed in chunks so a live session's file can be followed (tail -f).
            if self.written % self.flush_every == 0:
                self._file.flush()
        except OSError as exc:
            raise RecordingError(
                f"cannot write {self.path}: {exc.strerror}; free disk space"
            ) from None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class CallbackConsumer(BaseConsumer):
    """Wraps ``fn(region, result)`` (and an optional ``status_fn``) as a consumer."""

    def __init__(
        self,
        fn: Callable[[RegionFrame | None, FrameResult], None],
        status_fn: Callable[[PipelineStatus], None] | None = None,
        *,
        needs_frames: bool = False,
    ) -> None:
        self.fn = fn
        self.status_fn = status_fn
        self.needs_frames = needs_frames

    def on_result(self, region: RegionFrame | None, result: FrameResult) -> None:
        self.fn(region, result)

    def on_status(self, status: PipelineStatus) -> None:
        if self.status_fn is not None:
            self.status_fn(status)


@dataclass(frozen=True)
class LiveStats:
    """Rates and latencies over the reporter's window (``None`` while empty)."""

    fps: float | None
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    results: int
    alert: bool
    grade: int | None
    status: str
    drops: Mapping[str, int]

    def line(self) -> str:
        fps = "--" if self.fps is None else f"{self.fps:.1f}"
        p50 = "--" if self.latency_p50_ms is None else f"{self.latency_p50_ms:.0f}"
        p99 = "--" if self.latency_p99_ms is None else f"{self.latency_p99_ms:.0f}"
        grade = "-" if self.grade is None else str(self.grade)
        drops = " ".join(f"{k}={v}" for k, v in self.drops.items()) or "0"
        alert = "ON" if self.alert else "off"
        return (
            f"{fps} fps | latency p50 {p50} ms p99 {p99} ms | alert {alert} | grade {grade} | "
            f"{self.status} | drops {drops}"
        )


class StatusReporter(BaseConsumer):
    """Logs a status line every ``every_s``: fps, capture-to-result latency, alert, drops.

    ``drops`` returns named drop counters (e.g. from the consumer host and the
    stage heartbeats). Latency is measured when the result reaches this
    consumer, from the capture stamp (one machine, one monotonic clock).
    """

    def __init__(
        self,
        every_s: float = 5.0,
        *,
        window: int = 500,
        drops: Callable[[], Mapping[str, int]] | None = None,
        clock: Callable[[], int] = time.monotonic_ns,
        emit: Callable[[str], None] | None = None,
    ) -> None:
        self.every_ns = round(every_s * 1e9)
        self._lat: deque[float] = deque(maxlen=window)
        self._times: deque[int] = deque(maxlen=window)
        self._drops = drops or dict
        self._clock = clock
        self._emit = emit or log.info
        self._next: int | None = None
        self._last: FrameResult | None = None
        self._status: PipelineStatus | None = None
        self.results = 0

    def on_result(self, region: RegionFrame | None, result: FrameResult) -> None:
        now = self._clock()
        self._lat.append((now - result.t_capture_ns) / 1e6)
        self._times.append(now)
        self._last = result
        self.results += 1
        self.tick(now)

    def on_status(self, status: PipelineStatus) -> None:
        self._status = status
        self.tick(self._clock())

    def tick(self, now: int | None = None) -> None:
        """Emit the line if it is due (also called while no results arrive)."""
        now = self._clock() if now is None else now
        if self._next is None:
            self._next = now + self.every_ns
        elif now >= self._next:
            self._next = now + self.every_ns
            self._emit(self.stats(now).line())

    def stats(self, now: int | None = None) -> LiveStats:
        now = self._clock() if now is None else now
        recent = [t for t in self._times if now - t <= self.every_ns]
        fps = None
        if len(recent) >= 2 and recent[-1] > recent[0]:
            fps = (len(recent) - 1) / ((recent[-1] - recent[0]) / 1e9)
        lat = np.asarray(self._lat, dtype=np.float64)
        p50 = float(np.percentile(lat, 50)) if lat.size else None
        p99 = float(np.percentile(lat, 99)) if lat.size else None
        state = self._last.state if self._last is not None else None
        display = self._status.display_status if self._status is not None else None
        status = display or (state.status if state is not None else "waiting")
        return LiveStats(
            fps=fps,
            latency_p50_ms=p50,
            latency_p99_ms=p99,
            results=self.results,
            alert=bool(state.alert) if state is not None else False,
            grade=state.grade if state is not None else None,
            status=status,
            drops=dict(self._drops()),
        )


class OverlayVideoWriter(BaseConsumer):
    """Encodes each region with its overlay to a video file (``analyze --overlay-video``)."""

    needs_frames = True

    def __init__(
        self,
        path: str | Path,
        fps: float,
        *,
        status: Callable[[FrameResult], str] | None = None,
        settings: OverlaySettings | None = None,
    ) -> None:
        from pivh_live.pipeline.stages import OverlayStage
        from pivh_live.pipeline.video_out import StreamingVideoWriter

        self.overlay = OverlayStage(settings)
        self.writer = StreamingVideoWriter(path, fps)
        self.status = status

    def on_result(self, region: RegionFrame | None, result: FrameResult) -> None:
        if region is None:
            return
        line = self.status(result) if self.status is not None else None
        self.writer.write(self.overlay.render(region, result, line))

    def close(self) -> None:
        self.writer.close()
