"""The session store: recorded sessions on disk and their SQLite index (docs/recording.md).

Layout under the data root (``$PIVH_LIVE_DATA``, else
``$XDG_DATA_HOME/pivh-live``, else ``~/.local/share/pivh-live``)::

    index.sqlite                    sessions, findings, keyframes (WAL)
    sessions/<id>/session.json      metadata (no patient identifiers)
    sessions/<id>/video.mp4         the image region, H.264 fragmented MP4
    sessions/<id>/frames.jsonl      per-frame results journal + events
    sessions/<id>/keyframes/*.png   region frames at alert onsets and worst-grade peaks

Directories are 0700 and files 0600. A session id comes from outside (web
requests, command lines) and is checked against `SESSION_ID_RE` before any
path is built from it. The recorder writes through `SessionStore.new_session`;
the review app reads with the other methods.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pivh_live.errors import PivhError
from pivh_live.recording import index
from pivh_live.recording.files import private_dir, write_private_json
from pivh_live.recording.journal import (
    JOURNAL_FILE,
    is_frame_line,
    read_journal,
    summarize_journal,
)

if TYPE_CHECKING:
    from pivh_live.recording.writer import SessionWriter

log = logging.getLogger(__name__)

DATA_ENV = "PIVH_LIVE_DATA"
INDEX_FILE = "index.sqlite"
SESSIONS_DIR = "sessions"
META_FILE = "session.json"
VIDEO_FILE = "video.mp4"
VIDEO_MIME = "video/mp4"
KEYFRAME_DIR = "keyframes"
LOCK_FILE = ".lock"
RESERVE_FILE = ".reserve"
SESSION_SCHEMA = "pivh-live-session/1"
SESSION_ID_RE = re.compile(r"\A[0-9]{8}-[0-9]{6}-[0-9a-f]{4}\Z")
SESSION_STATUSES = index.SESSION_STATUSES


class SessionError(PivhError):
    """A session cannot be found, read or changed."""


class InvalidSessionIdError(SessionError):
    """A session id does not have the form YYYYMMDD-HHMMSS-xxxx."""


class UnknownSessionError(SessionError):
    """No session with this id."""


class SessionBusyError(SessionError):
    """The session is being recorded right now."""


def data_root() -> Path:
    """``$PIVH_LIVE_DATA``, else ``$XDG_DATA_HOME/pivh-live``, else ``~/.local/share/pivh-live``."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "pivh-live"


def validate_session_id(session_id: object) -> str:
    """``session_id`` if it has the form YYYYMMDD-HHMMSS-xxxx, else `InvalidSessionIdError`."""
    if not isinstance(session_id, str) or not SESSION_ID_RE.match(session_id):
        shown = repr(session_id)[:40]
        raise InvalidSessionIdError(
            f"invalid session id {shown}; ids look like 20240501-134502-9f3a "
            "(the review app lists them)"
        )
    return session_id


def new_session_id(now: datetime | None = None) -> str:
    """``YYYYMMDD-HHMMSS-xxxx``: UTC start time and 4 random hex digits."""
    now = now or datetime.now(timezone.utc)
    return f"{now.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def iso_utc(t: float | None = None) -> str:
    """Wall-clock time (``time.time()`` seconds) as ``2024-05-01T13:45:02.123Z``."""
    dt = datetime.fromtimestamp(time.time() if t is None else t, timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def parse_iso_utc(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


@dataclass(frozen=True)
class SessionInfo:
    """One row of the index. ``frames`` counts video frames; ``alerts`` alert onsets.

    ``started``/``ended`` are ISO 8601 UTC strings (``ended`` None while
    recording). ``status``: recording, complete, interrupted (the recorder
    died; recovered from the journal), stopped_disk_full.
    """

    id: str
    started: str
    ended: str | None
    duration_s: float | None
    frames: int
    worst_grade: int
    alerts: int
    model: str
    engine: str
    source_kind: str
    status: str


@dataclass(frozen=True)
class Finding:
    """An event worth reviewing: ``kind`` alert_onset or worst_grade at ``t_s`` video seconds."""

    session_id: str
    seq: int
    t_s: float
    grade: int
    p: float
    kind: str


@dataclass(frozen=True)
class Keyframe:
    """A saved region frame; ``path`` is relative to the session directory."""

    session_id: str
    seq: int
    t_s: float
    grade: int
    p: float
    path: str
    kind: str


@dataclass(frozen=True)
class SessionMeta:
    """What a new session records about its setup; never patient identifiers.

    ``source_kind`` is the source's scheme only (``v4l2``, ``file``,
    ``phantom``, ``rtsp``...), never a path or URL: file names can hold a
    patient's name. Use `source_kind_of` to derive it from a spec.
    """

    source_kind: str
    model_name: str = ""
    model_version: str = ""
    model_sha256: str = ""
    engine: str = ""
    roi: tuple[int, int, int, int] | None = None
    fps: float | None = None


def source_kind_of(spec: str) -> str:
    """The scheme of a source spec (``"v4l2:/dev/video0"`` -> ``"v4l2"``), nothing else."""
    from pivh_live.sources import parse_spec

    try:
        scheme = parse_spec(spec).scheme
    except PivhError:
        return "unknown"
    return scheme if re.fullmatch(r"[a-z][a-z0-9+.-]{0,15}", scheme) else "unknown"


class SessionStore:
    """Sessions under ``root`` (default `data_root()`); every id from outside is validated."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else data_root()
        self.sessions_dir = self.root / SESSIONS_DIR
        self.index_path = self.root / INDEX_FILE

    # --- paths ---------------------------------------------------------------

    def ensure(self) -> None:
        """Create the root (0700), sessions/ (0700) and the index (0600) if missing."""
        if not self.root.exists():
            private_dir(self.root)
        private_dir(self.sessions_dir)
        with index.connect(self.index_path):
            pass

    def session_dir(self, session_id: str) -> Path:
        return self.sessions_dir / validate_session_id(session_id)

    def _existing_dir(self, session_id: str) -> Path:
        path = self.session_dir(session_id)
        if not path.is_dir():
            raise UnknownSessionError(
                f"no session {session_id} in {self.sessions_dir}; the review app lists the sessions"
            )
        return path

    def video_path(self, session_id: str) -> Path:
        """The session's video (H.264 fragmented MP4, plays in browsers as ``video/mp4``)."""
        path = self._existing_dir(session_id) / VIDEO_FILE
        if not path.is_file():
            raise UnknownSessionError(f"session {session_id} has no video (no frames recorded)")
        return path

    def browser_video(self, session_id: str) -> tuple[Path, str]:
        """(path, MIME type) to serve to a browser's <video>; no transcode needed."""
        return self.video_path(session_id), VIDEO_MIME

    def keyframe_path(self, session_id: str, seq: int) -> Path:
        """The PNG of the session's keyframe for frame ``seq`` (the newest if there are two)."""
        try:
            number = int(seq)
        except (TypeError, ValueError):
            raise SessionError(f"keyframe number {str(seq)[:20]!r} is not an integer") from None
        rows = [k for k in self.keyframes(session_id) if k.seq == number]
        if not rows:
            raise UnknownSessionError(f"session {session_id} has no keyframe for frame {seq}")
        rel = Path(rows[-1].path)
        if rel.is_absolute() or ".." in rel.parts:  # the index is ours, but stay inside
            raise SessionError(f"keyframe path {rel} of session {session_id} is not allowed")
        return self._existing_dir(session_id) / rel

    def meta(self, session_id: str) -> dict[str, Any]:
        """The session's session.json as a dict."""
        path = self._existing_dir(session_id) / META_FILE
        try:
            return dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            raise SessionError(f"cannot read {path}: {exc}") from None

    # --- index reads ---------------------------------------------------------

    def list_sessions(self) -> list[SessionInfo]:
        """Every indexed session, newest first."""
        if not self.index_path.exists():
            return []
        with index.connect(self.index_path) as conn:
            rows = index.select(conn, "SELECT * FROM sessions ORDER BY started DESC, id DESC")
        return [SessionInfo(**row) for row in rows]

    def get(self, session_id: str) -> SessionInfo:
        validate_session_id(session_id)
        rows: list[dict[str, Any]] = []
        if self.index_path.exists():
            with index.connect(self.index_path) as conn:
                rows = index.select(conn, "SELECT * FROM sessions WHERE id = ?", (session_id,))
        if not rows:
            raise UnknownSessionError(
                f"no session {session_id} in {self.root}; the review app lists the sessions"
            )
        return SessionInfo(**rows[0])

    def findings(self, session_id: str) -> list[Finding]:
        """Alert onsets and new worst grades, in time order."""
        self.get(session_id)
        with index.connect(self.index_path) as conn:
            rows = index.select(
                conn,
                "SELECT * FROM findings WHERE session_id = ? ORDER BY t_s, rowid",
                (session_id,),
            )
        return [Finding(**row) for row in rows]

    def keyframes(self, session_id: str) -> list[Keyframe]:
        """Saved region frames, in time order."""
        self.get(session_id)
        with index.connect(self.index_path) as conn:
            rows = index.select(
                conn,
                "SELECT * FROM keyframes WHERE session_id = ? ORDER BY t_s, rowid",
                (session_id,),
            )
        return [Keyframe(**row) for row in rows]

    def frames(self, session_id: str) -> Iterator[dict[str, Any]]:
        """The journal's frame lines (``frame_record`` + live fields), in order.

        A line cut by a crash is skipped. Event lines are left out; see `events`.
        """
        path = self._existing_dir(session_id) / JOURNAL_FILE
        if path.exists():
            yield from (r for r in read_journal(path) if is_frame_line(r))

    def events(self, session_id: str) -> Iterator[dict[str, Any]]:
        """The journal's event lines (``{"event": "status" | "finding" | ...}``), in order."""
        path = self._existing_dir(session_id) / JOURNAL_FILE
        if path.exists():
            yield from (r for r in read_journal(path) if not is_frame_line(r))

    # --- changes -------------------------------------------------------------

    def is_active(self, session_id: str) -> bool:
        """True while a live recorder (in any process) holds the session's lock."""
        lock = self.session_dir(session_id) / LOCK_FILE
        try:
            fd = os.open(lock, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing drops our probe lock
        return False

    def new_session(self, meta: SessionMeta, **options: Any) -> SessionWriter:
        """Create a session directory and index row; returns its locked writer.

        ``options`` go to `SessionWriter` (flush and index intervals, keyframe limit).
        """
        from pivh_live.recording.writer import SessionWriter

        self.ensure()
        for _ in range(20):
            session_id = new_session_id()
            path = self.session_dir(session_id)
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                continue
            return SessionWriter(self, session_id, meta, **options)
        raise SessionError(f"cannot create a new session directory in {self.sessions_dir}")

    def delete(self, session_id: str) -> None:
        """Remove a session's files and index rows (not while it is being recorded)."""
        path = self.session_dir(session_id)
        if self.is_active(session_id):
            raise SessionBusyError(f"session {session_id} is being recorded; stop it first")
        if path.exists():
            shutil.rmtree(path)
        else:
            self.get(session_id)  # UnknownSessionError unless only the index knows it
        if self.index_path.exists():
            with index.connect(self.index_path) as conn, index.transaction(conn):
                conn.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
        log.info("deleted session %s", session_id)

    def recover(self) -> list[str]:
        """Repair the index at startup; returns the ids marked ``interrupted``.

        A session left ``recording`` whose recorder is gone (its lock is free)
        becomes ``interrupted`` with counts, findings and keyframes rebuilt
        from its journal; a session directory missing from the index is added;
        index rows without a directory are dropped.
        """
        self.ensure()
        indexed = {s.id: s for s in self.list_sessions()}
        on_disk = {p.name for p in self.sessions_dir.iterdir() if SESSION_ID_RE.match(p.name)}
        interrupted = []
        for session_id in sorted(on_disk):
            info = indexed.get(session_id)
            if info is not None and info.status != "recording":
                continue
            if self.is_active(session_id):
                if info is None:  # being recorded, but the index was lost: add it as it is
                    self._rebuild(session_id, live=True)
                continue
            status = self._rebuild(session_id)
            if status == "interrupted":
                interrupted.append(session_id)
        stale = set(indexed) - on_disk
        if stale:
            with index.connect(self.index_path) as conn, index.transaction(conn):
                conn.executemany("DELETE FROM sessions WHERE id = ?", [(s,) for s in stale])
        for session_id in interrupted:
            log.warning("session %s was interrupted (recorder died); recovered", session_id)
        return interrupted

    def _rebuild(self, session_id: str, live: bool = False) -> str | None:
        """Index rows (and, unless ``live``, session.json's status) from the session's files."""
        path = self.session_dir(session_id)
        try:
            meta = json.loads((path / META_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            log.warning("session %s has no readable %s; left out of the index", path, META_FILE)
            return None
        summary = summarize_journal(path / JOURNAL_FILE)
        status = meta.get("status", "interrupted")
        if status == "recording" and not live:
            (path / RESERVE_FILE).unlink(missing_ok=True)  # the dead recorder's disk reserve
            from pivh_live.recording.video import count_video_frames

            # A recorder that stopped on a full disk said so in its journal, if nothing else.
            stopped = summary.stopped
            status = stopped if stopped in SESSION_STATUSES[2:] else "interrupted"
            if meta.get("t0_capture_ns") is None:
                meta["t0_capture_ns"] = summary.first_t_ns
            meta.update(_ended_fields(meta, summary.last_t_ns))
            meta["status"] = status
            video = path / VIDEO_FILE
            frames = count_video_frames(video) if video.exists() else 0
            meta["frames"] = max(int(meta.get("frames") or 0), summary.video_frames, frames)
            meta["results"] = summary.results
            meta["worst_grade"] = max(int(meta.get("worst_grade") or 0), summary.worst_grade)
            meta["alerts"] = max(int(meta.get("alerts") or 0), summary.alerts)
            with contextlib.suppress(OSError):
                write_private_json(path / META_FILE, meta)
        row = session_row(meta)
        findings = [
            (session_id, int(f["seq"]), float(f["t_s"]), int(f["grade"]), float(f["p"]), f["kind"])
            for f in summary.findings
        ]
        keyframes = [
            (session_id, int(k["seq"]), float(k["t_s"]), int(k["grade"]), float(k["p"]),
             str(k["file"]), str(k.get("kind", "")))
            for k in summary.keyframes
            if (path / str(k["file"])).is_file()
        ]  # fmt: skip
        with index.connect(self.index_path) as conn, index.transaction(conn):
            index.upsert_session(conn, row)
            index.replace_children(conn, session_id, findings, keyframes)
        return status


def _ended_fields(meta: dict[str, Any], last_t_ns: int | None) -> dict[str, Any]:
    """``ended``/``duration_s`` of a crashed session, from its last journal stamp."""
    t0 = meta.get("t0_capture_ns")
    started_ns = meta.get("started_monotonic_ns")
    if last_t_ns is None or started_ns is None:
        return {"ended": meta.get("started"), "duration_s": 0.0}
    ended_wall = parse_iso_utc(meta["started"]) + (last_t_ns - int(started_ns)) / 1e9
    duration = (last_t_ns - int(t0)) / 1e9 if t0 is not None else 0.0
    return {
        "ended": iso_utc(ended_wall),
        "ended_monotonic_ns": last_t_ns,
        "duration_s": round(max(0.0, duration), 3),
    }


def session_row(meta: dict[str, Any]) -> dict[str, Any]:
    """The index row for a session.json dict."""
    model = meta.get("model") or {}
    name = str(model.get("name") or "")
    version = str(model.get("version") or "")
    return {
        "id": meta["id"],
        "started": meta["started"],
        "ended": meta.get("ended"),
        "duration_s": meta.get("duration_s"),
        "frames": int(meta.get("frames") or 0),
        "worst_grade": int(meta.get("worst_grade") or 0),
        "alerts": int(meta.get("alerts") or 0),
        "model": f"{name} {version}".strip(),
        "engine": str(meta.get("engine") or ""),
        "source_kind": str(meta.get("source_kind") or ""),
        "status": meta.get("status", "recording"),
    }
