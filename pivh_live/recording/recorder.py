"""The recorder: a pipeline consumer that records every captured region and every result.

`Recorder` starts a session (`SessionStore.new_session`) and one writer
thread that owns every file of it: the region video (`RegionVideoWriter`),
the journal, keyframes and the index. The pipeline's threads only queue
work, so a slow or full disk never stalls the live display.

Frames: in the multi-process pipeline `run_live` calls `attach(endpoints)`
before the stages start and the writer thread pulls every region from the
``record`` socket (`ReliablePuller`); in one process (`run_single`) nobody
attaches, so the recorder asks for frames (``needs_frames``) and gets the
very frame with each result. Results and statuses come through
``on_result``/``on_status``.

A write failure stops the recording cleanly (`warning` says why, the
session is marked ``stopped_disk_full`` for a full disk) and the live
display goes on.
"""

from __future__ import annotations

import errno
import logging
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pivh_live.pipeline.consumers import frame_record
from pivh_live.pipeline.results import BaseConsumer, FrameResult, PipelineStatus, RegionFrame
from pivh_live.recording.retention import (
    MIN_FREE_BYTES,
    RetentionPolicy,
    apply_retention,
    disk_status,
    format_bytes,
    require_free_space,
)
from pivh_live.recording.store import SessionMeta, SessionStore
from pivh_live.recording.video import RegionVideoWriter, count_video_frames

log = logging.getLogger(__name__)

_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_NEARLY_FULL_BYTES = 16 * 1024 * 1024  # a write error with less than this free is a full disk
DEFAULT_RETENTION = RetentionPolicy()
# A finding's keyframe further than this from the frame it names is logged: the frame had
# left the ring of buffered regions (the smoother's evidence can precede the finding).
KEYFRAME_TOLERANCE_NS = 100_000_000


@dataclass(frozen=True)
class RecorderStatus:
    """What the display may show about the recording.

    ``missed``: frame numbers never received (gaps on the record socket, e.g.
    frames capture dropped because the recorder fell 64 frames behind);
    ``queue_dropped``: items the writer thread's queue refused.
    """

    recording: bool
    session_id: str
    frames: int
    results: int
    missed: int
    queue_dropped: int
    warning: str | None


@dataclass(frozen=True)
class WriteTimes:
    """Per-frame video write time (encode + mux + write) over the last frames, ms."""

    frames: int
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None


class Recorder(BaseConsumer):
    """Records one session; ``close()`` finishes it (``complete``).

    Raises `RecordingError` at start when the disk has less than
    ``min_free_bytes`` free. ``video_factory(path)`` and ``journal_opener``
    replace the file writers (tests inject failing ones).
    """

    needs_record = True

    def __init__(
        self,
        meta: SessionMeta,
        store: SessionStore | None = None,
        *,
        retention: RetentionPolicy | None = DEFAULT_RETENTION,
        min_free_bytes: int = MIN_FREE_BYTES,
        crf: int = 18,
        preset: str = "ultrafast",
        ring_s: float = 1.5,
        ring_frames: int = 96,
        disk_check_s: float = 10.0,
        queue_size: int = 256,
        video_factory: Callable[[Path], Any] | None = None,
        **writer_options: Any,
    ) -> None:
        self.store = store or SessionStore()
        self.store.recover()
        if retention is not None:
            apply_retention(self.store, retention)
        self.min_free_bytes = min_free_bytes
        self._disk_check_s = disk_check_s
        disk = require_free_space(self.store.root, min_free_bytes)
        if disk.warning:
            log.warning("%s", disk.warning)
        self.session = self.store.new_session(meta, **writer_options)
        self.session_id = self.session.id
        factory = video_factory or (lambda p: RegionVideoWriter(p, crf=crf, preset=preset))
        try:
            self._video = factory(self.session.video_path)
        except Exception as exc:
            self.session.abort("interrupted", f"cannot create the video writer: {exc}")
            raise
        self._ring: deque[RegionFrame] = deque(maxlen=max(1, ring_frames))
        self._ring_ns = round(ring_s * 1e9)
        self._queue: queue.Queue[tuple[Any, ...]] = queue.Queue(maxsize=queue_size)
        self._address: str | None = None
        self._recording = True
        self._stop_seen = False
        self._warning: str | None = disk.warning
        self._queue_dropped = 0
        self._missed = 0
        self._last_seq: int | None = None
        self._onsets_seen = 0  # the smoother's n_alert_onsets at the last result
        self._alerts = 0  # alert onsets in this session (survives smoother restarts)
        self._worst = 0
        self._write_ms: deque[float] = deque(maxlen=2000)
        self._next_disk = time.monotonic() + disk_check_s
        self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
        self._thread.start()

    # --- consumer interface (pipeline threads) ---------------------------------

    @property
    def needs_frames(self) -> bool:  # type: ignore[override]
        """Frames with each result only when no record socket was attached (one process)."""
        return self._address is None

    def attach(self, endpoints: Any) -> None:
        """Pull every region from ``endpoints.record`` (called by `run_live` before the stages)."""
        self._address = endpoints.record
        self._put(("attach", endpoints.record))

    def on_result(self, region: RegionFrame | None, result: FrameResult) -> None:
        if self._recording:
            self._put(("result", region if self._address is None else None, result))

    def on_status(self, status: PipelineStatus) -> None:
        if self._recording:
            self._put(("status", status))

    def close(self) -> None:
        """Finish the session: drain what was sent, close the video, mark it complete."""
        if self._thread.is_alive():
            self._queue.put(("stop",))
            self._thread.join()

    @property
    def warning(self) -> str | None:
        """Why recording stopped or is at risk (disk nearly full), else None."""
        return self._warning

    def status(self) -> RecorderStatus:
        return RecorderStatus(
            recording=self._recording,
            session_id=self.session_id,
            frames=self.session.frames,
            results=self.session.results,
            missed=self._missed,
            queue_dropped=self._queue_dropped,
            warning=self._warning,
        )

    def write_times(self) -> WriteTimes:
        ms = np.asarray(self._write_ms, dtype=np.float64)
        if not ms.size:
            return WriteTimes(0, None, None, None)
        return WriteTimes(
            int(ms.size),
            float(np.percentile(ms, 50)),
            float(np.percentile(ms, 99)),
            float(ms.max()),
        )

    def _put(self, item: tuple[Any, ...]) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self._queue_dropped += 1

    # --- writer thread ---------------------------------------------------------

    def _run(self) -> None:
        puller = None
        try:
            while True:
                if puller is not None:
                    self._pull(puller, 5 if self._queue.empty() else 0)
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        item = None
                else:
                    try:
                        item = self._queue.get(timeout=0.1)
                    except queue.Empty:
                        item = None
                if item is not None:
                    if item[0] == "stop":
                        self._stop_seen = True
                        if puller is not None:
                            self._drain(puller)
                        self._finish()
                        return
                    if item[0] == "attach":
                        from pivh_live.transport import ReliablePuller

                        puller = ReliablePuller(item[1], name="recorder")
                    else:
                        self._handle(item)
                self.session.tick()
                self._check_disk()
        except Exception as exc:  # never let recording take the live display down
            self._stop_on_error(exc)
            self._discard_until_stop()
        finally:
            if puller is not None:
                puller.close()

    def _pull(self, puller: Any, timeout_ms: int) -> None:
        from pivh_live.pipeline.messages import region_from_message
        from pivh_live.transport import TransportError

        msg = puller.recv(timeout_ms)
        while msg is not None:
            try:
                self._frame(region_from_message(msg))
            except TransportError as exc:
                log.warning("recorder skipped a bad frame message: %s", exc)
            msg = puller.recv(0)

    def _drain(self, puller: Any, limit_s: float = 2.0) -> None:
        """Frames already sent when the run stops; capture may still be running, so bounded."""
        end = time.monotonic() + limit_s
        while time.monotonic() < end:
            before = self.session.frames
            self._pull(puller, 20)
            if self.session.frames == before:
                return

    def _handle(self, item: tuple[Any, ...]) -> None:
        kind = item[0]
        if kind == "result":
            _, region, result = item
            if region is not None:
                self._frame(region)
            self._result(result)
        elif kind == "status":
            s: PipelineStatus = item[1]
            self.session.write_event(
                "status", t_ns=s.t_ns, source_state=s.source_state,
                source_message=s.source_message, stages=[list(x) for x in s.stages],
                restarts=s.restarts, display_status=s.display_status,
            )  # fmt: skip

    def _frame(self, region: RegionFrame) -> None:
        if self._last_seq is not None and region.seq > self._last_seq + 1:
            self._missed += region.seq - self._last_seq - 1
        self._last_seq = region.seq  # a restarted capture counts from 0 again
        t0 = self.session.time_origin(region.t_capture_ns)
        start = time.perf_counter()
        self._video.write(region.image, region.t_capture_ns, t0)
        self._write_ms.append((time.perf_counter() - start) * 1e3)
        h, w = region.image.shape[:2]
        self.session.video_frame(region.t_capture_ns, w, h)
        self._ring.append(region)
        while self._ring and region.t_capture_ns - self._ring[0].t_capture_ns > self._ring_ns:
            self._ring.popleft()

    def _result(self, result: FrameResult) -> None:
        s = result.state
        if s.n_alert_onsets < self._onsets_seen:  # the smoother restarted with inference
            self._onsets_seen = 0
        new_onset = s.n_alert_onsets > self._onsets_seen
        self._alerts += s.n_alert_onsets - self._onsets_seen
        self._onsets_seen = s.n_alert_onsets
        new_worst = s.worst_grade > self._worst
        self._worst = max(self._worst, s.worst_grade)
        record = frame_record(result, live=True)
        record["worst_grade"] = self._worst
        record["alert_onsets"] = self._alerts
        self.session.write_frame_line(record, self._worst, self._alerts)
        if new_worst:
            ev = s.best_evidence
            if ev is not None and ev.grade == s.worst_grade:
                self._finding(ev.seq, ev.t_ns, ev.grade, ev.p, "worst_grade")
            else:
                t = s.worst_grade_t_ns or result.t_capture_ns
                self._finding(result.seq, t, s.worst_grade, _p_at_least(result, s.worst_grade),
                              "worst_grade")  # fmt: skip
        if new_onset:
            grade = max(1, s.grade or 1)
            t = s.alert_since_ns if s.alert_since_ns is not None else result.t_capture_ns
            self._finding(result.seq, t, grade, _p_at_least(result, grade), "alert_onset")

    def _finding(self, seq: int, t_ns: int, grade: int, p: float, kind: str) -> None:
        region = self._region_at(t_ns)
        if region is not None and abs(region.t_capture_ns - t_ns) > KEYFRAME_TOLERANCE_NS:
            log.warning(
                "%s keyframe: frame %d is no longer buffered; keeping the nearest one (%.0f ms "
                "away)",
                kind,
                seq,
                abs(region.t_capture_ns - t_ns) / 1e6,
            )
        if region is not None:
            seq, t_ns = region.seq, region.t_capture_ns
        self.session.add_finding(seq, t_ns, grade, p, kind)
        if region is not None:
            self.session.add_keyframe(seq, t_ns, grade, p, kind, region.image)

    def _region_at(self, t_ns: int) -> RegionFrame | None:
        """The buffered region captured at ``t_ns``, else the nearest one."""
        if not self._ring:
            return None
        return min(self._ring, key=lambda r: abs(r.t_capture_ns - t_ns))

    def _check_disk(self) -> None:
        now = time.monotonic()
        if now < self._next_disk:
            return
        self._next_disk = now + self._disk_check_s
        status = disk_status(self.store.root)
        if status.free_bytes < self.min_free_bytes:
            raise OSError(errno.ENOSPC, f"only {format_bytes(status.free_bytes)} left")
        if status.warning != self._warning:
            self._warning = status.warning
            if status.warning:
                log.warning("%s", status.warning)

    def _finish(self) -> None:
        self._recording = False
        self._video.close()
        s = self.session
        span = (s.last_t_ns - s.t0_ns) / 1e9 if s.t0_ns is not None and s.last_t_ns else 0.0
        s.finish(
            "complete",
            self._warning,
            missed_frames=self._missed,
            queue_dropped=self._queue_dropped,
            resized_frames=getattr(self._video, "resized", 0),
            fps_measured=round((s.frames - 1) / span, 3) if span > 0 else None,
        )

    def _out_of_space(self) -> bool:
        try:
            free = disk_status(self.store.root).free_bytes
        except OSError:
            return False
        return free < max(self.min_free_bytes, _NEARLY_FULL_BYTES)

    def _stop_on_error(self, exc: Exception) -> None:
        self._recording = False
        full = (
            getattr(exc, "errno", None) in _FULL
            or "full" in str(exc).lower()
            or self._out_of_space()  # SQLite says "disk I/O error" when its journal cannot grow
        )
        if full:
            status = "stopped_disk_full"
            self._warning = (
                f"RECORDING STOPPED: disk full in {self.store.root}; the session so far is "
                "saved; free space (delete old sessions) before the next recording"
            )
            log.warning("%s (%s)", self._warning, exc)
        else:
            status = "interrupted"
            self._warning = f"RECORDING STOPPED: cannot write the session ({exc}); see the log"
            if isinstance(exc, OSError | sqlite3.Error):
                log.warning("%s", self._warning)
            else:
                log.exception("recording stopped by an unexpected error")
        try:
            self._video.close()
        except Exception as close_exc:  # the video may be what failed
            log.debug("closing the video after the failure: %s", close_exc)
        if self.session.video_path.exists():  # frames in a fragment that failed are gone
            self.session.frames = min(self.session.frames,
                                      count_video_frames(self.session.video_path))  # fmt: skip
        self.session.abort(status, self._warning, missed_frames=self._missed,
                           queue_dropped=self._queue_dropped)  # fmt: skip

    def _discard_until_stop(self) -> None:
        while not self._stop_seen:
            self._stop_seen = self._queue.get()[0] == "stop"


def _p_at_least(result: FrameResult, grade: int) -> float:
    """The frame's own P(grade >= ``grade``)."""
    return float(np.sum(np.asarray(result.score.grade_probs, dtype=np.float64)[grade:]))
