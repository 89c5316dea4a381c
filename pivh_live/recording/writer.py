"""One session being recorded: its directory, lock, journal, keyframes, metadata and index rows.

`SessionStore.new_session` creates it. The owner (the `Recorder`) calls the
``write_*``/``add_*`` methods for each frame and event and `tick` often; the
index row is updated at most every ``index_every_s`` (one short
transaction), session.json at the start and the end. An ``OSError`` from any
method (disk full) propagates; the caller then calls `abort`, which saves
what it still can.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from pivh_live import DISCLAIMER, __version__
from pivh_live.recording import index
from pivh_live.recording.files import (
    FILE_MODE,
    open_private_append,
    private_dir,
    write_private_bytes,
    write_private_json,
)
from pivh_live.recording.journal import JOURNAL_FILE, JournalWriter
from pivh_live.recording.store import (
    KEYFRAME_DIR,
    LOCK_FILE,
    META_FILE,
    RESERVE_FILE,
    SESSION_SCHEMA,
    VIDEO_FILE,
    SessionError,
    SessionMeta,
    iso_utc,
    session_row,
)

if TYPE_CHECKING:
    from pivh_live.recording.store import SessionStore

log = logging.getLogger(__name__)

FINDING_KINDS = ("alert_onset", "worst_grade")
# Freed when the disk fills, so the final session.json, journal line and index row still fit.
RESERVE_BYTES = 1 << 20


class SessionWriter:
    """Writes one session; holds an exclusive lock on ``<dir>/.lock`` until `finish`/`abort`."""

    def __init__(
        self,
        store: SessionStore,
        session_id: str,
        meta: SessionMeta,
        *,
        flush_s: float = 0.5,
        fsync_s: float = 1.0,
        index_every_s: float = 1.0,
        max_keyframes: int = 24,
        reserve_bytes: int = RESERVE_BYTES,
        clock: Callable[[], float] = time.monotonic,
        journal_opener: Callable[[Path], IO[str]] = open_private_append,
    ) -> None:
        self.store = store
        self.id = session_id
        self.dir = private_dir(store.session_dir(session_id))
        self.video_path = self.dir / VIDEO_FILE
        self.index_every_s = index_every_s
        self.max_keyframes = max_keyframes
        self._clock = clock
        self._lock_fd: int | None = _lock(self.dir / LOCK_FILE)
        self._reserve = self.dir / RESERVE_FILE
        private_dir(self.dir / KEYFRAME_DIR)
        self.t0_ns: int | None = None  # capture stamp of video time 0
        self.frames = 0  # video frames written
        self.results = 0
        self.worst_grade = 0
        self.alerts = 0
        self.keyframes = 0
        self.keyframes_skipped = 0
        self._keyframe_files: dict[int, Path] = {}  # capture stamp -> file
        self.last_t_ns: int | None = None
        self.finished = False
        self._pending_findings: list[tuple[Any, ...]] = []
        self._pending_keyframes: list[tuple[Any, ...]] = []
        self._next_index = clock() + index_every_s
        self.meta: dict[str, Any] = {
            "schema": SESSION_SCHEMA,
            "id": session_id,
            "status": "recording",
            "started": iso_utc(),
            "started_monotonic_ns": time.monotonic_ns(),
            "ended": None,
            "ended_monotonic_ns": None,
            "duration_s": None,
            "t0_capture_ns": None,
            "source_kind": meta.source_kind,
            "model": {
                "name": meta.model_name,
                "version": meta.model_version,
                "sha256": meta.model_sha256,
            },
            "engine": meta.engine,
            "roi": list(meta.roi) if meta.roi is not None else None,
            "fps": meta.fps,
            "video": {
                "file": VIDEO_FILE,
                "codec": "h264",
                "container": "mp4",
                "width": None,
                "height": None,
                "time_base": "1/1000",
            },
            "frames": 0,
            "results": 0,
            "missed_frames": 0,
            "worst_grade": 0,
            "alerts": 0,
            "keyframes": 0,
            "warning": None,
            "pivh_live_version": __version__,
            "disclaimer": DISCLAIMER,
        }
        try:
            _allocate(self._reserve, reserve_bytes)
            self._write_meta()
            with index.connect(store.index_path) as conn, index.transaction(conn):
                index.upsert_session(conn, session_row(self.meta))
            self.journal = JournalWriter(
                self.dir / JOURNAL_FILE,
                flush_s=flush_s,
                fsync_s=fsync_s,
                clock=clock,
                opener=journal_opener,
            )
        except OSError as exc:
            self._unlock()
            shutil.rmtree(self.dir, ignore_errors=True)  # no half-made session left behind
            raise SessionError(
                f"cannot start recording in {self.dir}: {exc.strerror or exc}; "
                "free disk space or set PIVH_LIVE_DATA to a writable directory"
            ) from None
        log.info("recording session %s in %s", session_id, self.dir)

    # --- per frame -----------------------------------------------------------

    def time_origin(self, t_ns: int) -> int:
        """Video time 0: the first capture stamp seen (frame or result)."""
        if self.t0_ns is None:
            self.t0_ns = int(t_ns)
            self.meta["t0_capture_ns"] = self.t0_ns
        return self.t0_ns

    def t_s(self, t_ns: int) -> float:
        """Seconds of video time for a capture stamp."""
        return round((int(t_ns) - self.time_origin(t_ns)) / 1e9, 6)

    def video_frame(self, t_ns: int, width: int, height: int) -> None:
        """Count a frame the video writer has taken."""
        self.frames += 1
        self._seen(t_ns)
        if self.meta["video"]["width"] is None:
            self.meta["video"].update(width=width, height=height)

    def write_frame_line(self, record: Mapping[str, Any], worst_grade: int, alerts: int) -> None:
        self.journal.write(record)
        self.results += 1
        self.worst_grade = max(self.worst_grade, int(worst_grade))
        self.alerts = max(self.alerts, int(alerts))
        t = record.get("t_capture_ns")
        if isinstance(t, int):
            self._seen(t)

    def write_event(self, event: str, **fields: Any) -> None:
        self.journal.write({"event": event, **fields})

    def add_finding(self, seq: int, t_ns: int, grade: int, p: float, kind: str) -> None:
        t_s = self.t_s(t_ns)
        self.write_event("finding", kind=kind, seq=seq, t_s=t_s, t_capture_ns=t_ns, grade=grade,
                         p=round(p, 6))  # fmt: skip
        self._pending_findings.append((self.id, seq, t_s, grade, round(p, 6), kind))

    def add_keyframe(
        self, seq: int, t_ns: int, grade: int, p: float, kind: str, image: np.ndarray
    ) -> Path | None:
        """Save ``image`` as a PNG keyframe; None (and counted) beyond ``max_keyframes``.

        New worst grades (at most four per session) are always kept; alert
        onsets beyond the limit are not saved. Two findings on the same frame
        (an onset that is also a new worst grade) share one file.
        """
        rel = self._keyframe_files.get(int(t_ns))
        if rel is None:
            if kind != "worst_grade" and len(self._keyframe_files) >= self.max_keyframes:
                self.keyframes_skipped += 1
                return None
            rel = self._save_png(seq, image)
            self._keyframe_files[int(t_ns)] = rel
        t_s = self.t_s(t_ns)
        self.keyframes = len(self._keyframe_files)
        self.write_event("keyframe", kind=kind, seq=seq, t_s=t_s, t_capture_ns=t_ns, grade=grade,
                         p=round(p, 6), file=rel.as_posix())  # fmt: skip
        self._pending_keyframes.append((self.id, seq, t_s, grade, round(p, 6), rel.as_posix(),
                                        kind))  # fmt: skip
        return self.dir / rel

    def _save_png(self, seq: int, image: np.ndarray) -> Path:
        import cv2

        ok, png = cv2.imencode(".png", image)
        if not ok:
            raise SessionError(f"cannot encode keyframe {seq} as PNG")
        rel = Path(KEYFRAME_DIR) / f"{seq}.png"
        n = 1
        while (self.dir / rel).exists():  # a restarted capture counts from 0 again
            n += 1
            rel = Path(KEYFRAME_DIR) / f"{seq}-{n}.png"
        write_private_bytes(self.dir / rel, png.tobytes())
        return rel

    def tick(self, *, force_index: bool = False) -> None:
        """Journal flush/fsync policy; the index row (and a progress line) once per interval."""
        self.journal.tick()
        now = self._clock()
        if force_index or now >= self._next_index:
            self._next_index = now + self.index_every_s
            self.write_event("progress", frames=self.frames, results=self.results,
                             t_capture_ns=self.last_t_ns)  # fmt: skip
            self._commit_index()

    # --- end -----------------------------------------------------------------

    def finish(self, status: str = "complete", warning: str | None = None, **extra: Any) -> None:
        """Close the journal, write the final session.json and index row, release the lock."""
        if self.finished:
            return
        try:
            self._reserve.unlink(missing_ok=True)
            self.tick(force_index=True)
            self.journal.close()
            self._final_meta(status, warning, extra)
            self._write_meta()
            self._commit_index()
        finally:
            self.finished = True
            self._unlock()
        log.info("session %s %s: %d frames", self.id, status, self.frames)

    def abort(self, status: str, warning: str, **extra: Any) -> None:
        """Best effort after a write failure: each step tried on its own, nothing raised."""
        if self.finished:
            return
        self.finished = True
        steps: list[Callable[[], None]] = [
            lambda: self._reserve.unlink(missing_ok=True),
            lambda: self.write_event("stopped", reason=status, message=warning),
            self.journal.close,
            lambda: self._final_meta(status, warning, extra),
            self._write_meta,
            self._commit_index,
        ]
        for step in steps:
            try:
                step()
            except (OSError, ValueError, index.sqlite3.Error) as exc:
                log.debug("while stopping session %s: %s", self.id, exc)
        self._unlock()

    def _final_meta(self, status: str, warning: str | None, extra: Mapping[str, Any]) -> None:
        ended_ns = time.monotonic_ns()
        duration = 0.0
        if self.t0_ns is not None and self.last_t_ns is not None:
            duration = max(0.0, (self.last_t_ns - self.t0_ns) / 1e9)
        self.meta.update(
            status=status,
            ended=iso_utc(),
            ended_monotonic_ns=ended_ns,
            duration_s=round(duration, 3),
            warning=warning,
            **extra,
        )
        self._sync_counts()

    def _sync_counts(self) -> None:
        self.meta.update(
            frames=self.frames,
            results=self.results,
            worst_grade=self.worst_grade,
            alerts=self.alerts,
            keyframes=self.keyframes,
            keyframes_skipped=self.keyframes_skipped,
        )

    def _seen(self, t_ns: int) -> None:
        self.time_origin(t_ns)
        if self.last_t_ns is None or t_ns > self.last_t_ns:
            self.last_t_ns = int(t_ns)

    def _write_meta(self) -> None:
        write_private_json(self.dir / META_FILE, self.meta)

    def _commit_index(self) -> None:
        self._sync_counts()
        if self.meta["status"] == "recording" and self.t0_ns is not None and self.last_t_ns:
            self.meta["duration_s"] = round((self.last_t_ns - self.t0_ns) / 1e9, 3)
        findings, keyframes = self._pending_findings, self._pending_keyframes
        with index.connect(self.store.index_path) as conn, index.transaction(conn):
            index.upsert_session(conn, session_row(self.meta))
            index.insert_rows(conn, "findings", index.FINDING_COLUMNS, findings)
            index.insert_rows(conn, "keyframes", index.KEYFRAME_COLUMNS, keyframes)
        self._pending_findings, self._pending_keyframes = [], []

    def _unlock(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _allocate(path: Path, size: int) -> None:
    """A file of ``size`` bytes really taking disk space (not sparse)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        if size > 0:
            try:
                os.posix_fallocate(fd, 0, size)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                os.write(fd, bytes(size))  # file systems without fallocate
    finally:
        os.close(fd)


def _lock(path: Path) -> int:
    """Open and exclusively lock ``path``; the kernel drops the lock if we die."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise SessionError(f"{path.parent.name} is already being recorded") from None
    return fd
