"""The per-session results journal ``frames.jsonl``: writing with bounded loss, tolerant reading.

Two kinds of line, one JSON object each:

- a **frame line**: `pivh_live.pipeline.consumers.frame_record(result, live=True)`
  (the schema of analyze's frames.jsonl plus the live fields) with
  ``worst_grade`` and ``alert_onsets`` added; it has no ``event`` key;
- an **event line**: ``{"event": NAME, ...}`` with NAME ``status`` (a pipeline
  status change), ``finding``, ``keyframe``, ``progress`` (video frames written,
  about once a second) or ``stopped`` (why recording ended early).

The writer flushes to the OS every ``flush_s`` and fsyncs at most every
``fsync_s``, so a SIGKILL loses at most about ``flush_s`` of lines and a
power cut about ``fsync_s``; a reader skips a cut last line.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from pivh_live.recording.files import open_private_append

log = logging.getLogger(__name__)

JOURNAL_FILE = "frames.jsonl"


class JournalWriter:
    """Appends lines to a 0600 file; ``tick()`` applies the flush/fsync policy."""

    def __init__(
        self,
        path: Path,
        *,
        flush_s: float = 0.5,
        fsync_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        opener: Callable[[Path], IO[str]] = open_private_append,
    ) -> None:
        self.path = path
        self.flush_s = flush_s
        self.fsync_s = fsync_s
        self._clock = clock
        self._file: IO[str] | None = opener(path)
        now = clock()
        self._next_flush = now + flush_s
        self._next_fsync = now + fsync_s
        self._dirty = False
        self.lines = 0

    def write(self, record: Mapping[str, Any]) -> None:
        """Buffer one line (OSError, e.g. ENOSPC, propagates to the caller)."""
        if self._file is None:
            return
        self._file.write(json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n")
        self._dirty = True
        self.lines += 1

    def tick(self) -> None:
        """Flush when ``flush_s`` has passed, fsync when ``fsync_s`` has."""
        if self._file is None:
            return
        now = self._clock()
        if now >= self._next_flush:
            self._next_flush = now + self.flush_s
            if self._dirty:
                self._file.flush()
        if now >= self._next_fsync:
            self._next_fsync = now + self.fsync_s
            if self._dirty:
                self._file.flush()
                os.fsync(self._file.fileno())
                self._dirty = False

    def close(self) -> None:
        """Flush, fsync and close; the file is closed even when the flush fails."""
        f, self._file = self._file, None
        if f is None:
            return
        try:
            f.flush()
            os.fsync(f.fileno())
        finally:
            try:
                f.close()
            except OSError:
                log.debug("closing %s failed after a failed flush", self.path)


def read_journal(path: Path) -> Iterator[dict[str, Any]]:
    """Every complete line of a journal as a dict; a cut or corrupt line is skipped.

    A crash can cut the last line; any other bad line (disk corruption) is
    skipped with a warning instead of hiding the rest of the session.
    """
    with open(path, "rb") as f:
        for n, raw in enumerate(f, start=1):
            if not raw.endswith(b"\n"):
                log.info("%s: ignoring the cut last line %d", path, n)
                return
            try:
                record = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                log.warning("%s: skipping unreadable line %d", path, n)
                continue
            if isinstance(record, dict):
                yield record


def is_frame_line(record: Mapping[str, Any]) -> bool:
    return "event" not in record


@dataclass
class JournalSummary:
    """What a journal says about its session (used to rebuild the index after a crash)."""

    results: int = 0
    video_frames: int = 0
    first_t_ns: int | None = None
    last_t_ns: int | None = None
    worst_grade: int = 0
    alerts: int = 0
    findings: list[dict[str, Any]] = field(default_factory=list)
    keyframes: list[dict[str, Any]] = field(default_factory=list)
    stopped: str | None = None

    def add(self, record: Mapping[str, Any]) -> None:
        event = record.get("event")
        t = record.get("t_capture_ns")
        if isinstance(t, int):
            self.first_t_ns = t if self.first_t_ns is None else min(self.first_t_ns, t)
            self.last_t_ns = t if self.last_t_ns is None else max(self.last_t_ns, t)
        if event is None:
            self.results += 1
            grade = record.get("worst_grade", record.get("grade", 0))
            self.worst_grade = max(self.worst_grade, int(grade or 0))
            self.alerts = max(self.alerts, int(record.get("alert_onsets") or 0))
        elif event == "progress":
            self.video_frames = max(self.video_frames, int(record.get("frames") or 0))
        elif event == "finding":
            self.findings.append(dict(record))
        elif event == "keyframe":
            self.keyframes.append(dict(record))
        elif event == "stopped":
            self.stopped = str(record.get("reason") or "")


def summarize_journal(path: Path) -> JournalSummary:
    summary = JournalSummary()
    if path.exists():
        for record in read_journal(path):
            summary.add(record)
    return summary
