"""The SQLite index of recorded sessions (``<root>/index.sqlite``).

WAL mode so the review app reads while a recorder writes; a new connection
per operation (cheap, and safe across threads); short transactions. The
session directories are the truth: the index can be rebuilt from them
(`SessionStore.recover`).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from pivh_live.recording.files import FILE_MODE, create_private_file, private_umask

SCHEMA_VERSION = 1
SESSION_STATUSES = ("recording", "complete", "interrupted", "stopped_disk_full")
SESSION_COLUMNS = (
    "id",
    "started",
    "ended",
    "duration_s",
    "frames",
    "worst_grade",
    "alerts",
    "model",
    "engine",
    "source_kind",
    "status",
)
FINDING_COLUMNS = ("session_id", "seq", "t_s", "grade", "p", "kind")
KEYFRAME_COLUMNS = ("session_id", "seq", "t_s", "grade", "p", "path", "kind")

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    started TEXT NOT NULL,
    ended TEXT,
    duration_s REAL,
    frames INTEGER NOT NULL DEFAULT 0,
    worst_grade INTEGER NOT NULL DEFAULT 0,
    alerts INTEGER NOT NULL DEFAULT 0,
    model TEXT NOT NULL DEFAULT '',
    engine TEXT NOT NULL DEFAULT '',
    source_kind TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL CHECK (status IN {SESSION_STATUSES!r})
);
CREATE TABLE IF NOT EXISTS findings (
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    t_s REAL NOT NULL,
    grade INTEGER NOT NULL,
    p REAL NOT NULL,
    kind TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS findings_session ON findings(session_id, t_s);
CREATE TABLE IF NOT EXISTS keyframes (
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    t_s REAL NOT NULL,
    grade INTEGER NOT NULL,
    p REAL NOT NULL,
    path TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS keyframes_session ON keyframes(session_id, t_s);
PRAGMA user_version = {SCHEMA_VERSION};
"""


@contextlib.contextmanager
def connect(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection to the index (created 0600 with the schema if missing); commits on success."""
    fresh = not path.exists()
    if fresh:
        create_private_file(path)
    with private_umask():  # the -wal and -shm files SQLite creates
        conn = sqlite3.connect(str(path), timeout=10.0, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout = 10000")
        conn.execute("PRAGMA foreign_keys = ON")
        if fresh or _user_version(conn) < SCHEMA_VERSION:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.executescript(_SCHEMA)
        conn.execute("PRAGMA synchronous = NORMAL")  # WAL: durable at checkpoints, never corrupt
        yield conn
    finally:
        conn.close()
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        with contextlib.suppress(OSError):
            if side.stat().st_mode & 0o777 != FILE_MODE:
                side.chmod(FILE_MODE)


def _user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def upsert_session(conn: sqlite3.Connection, row: Mapping[str, Any]) -> None:
    cols = ", ".join(SESSION_COLUMNS)
    marks = ", ".join("?" for _ in SESSION_COLUMNS)
    updates = ", ".join(f"{c} = excluded.{c}" for c in SESSION_COLUMNS[1:])
    conn.execute(
        f"INSERT INTO sessions ({cols}) VALUES ({marks}) ON CONFLICT(id) DO UPDATE SET {updates}",
        [row.get(c) for c in SESSION_COLUMNS],
    )


def insert_rows(
    conn: sqlite3.Connection, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    assert table in ("findings", "keyframes")  # never a caller's string in SQL
    marks = ", ".join("?" for _ in columns)
    conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)


def replace_children(
    conn: sqlite3.Connection,
    session_id: str,
    findings: Iterable[Sequence[Any]],
    keyframes: Iterable[Sequence[Any]],
) -> None:
    """Replace a session's findings and keyframes rows (index rebuild)."""
    conn.execute("DELETE FROM findings WHERE session_id = ?", (session_id,))
    conn.execute("DELETE FROM keyframes WHERE session_id = ?", (session_id,))
    insert_rows(conn, "findings", FINDING_COLUMNS, findings)
    insert_rows(conn, "keyframes", KEYFRAME_COLUMNS, keyframes)


def select(conn: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    cur = conn.execute(sql, params)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
