"""Private files and directories: directories 0700, files 0600, whatever the umask.

Recordings hold patient images, so nothing under the sessions root may be
readable by other users. Modes are set explicitly on creation (``os.open``
with a mode, then ``chmod``, because the umask can only remove bits), and
`private_umask` covers files other libraries create (FFmpeg's video, SQLite's
WAL and shared-memory files).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

DIR_MODE = 0o700
FILE_MODE = 0o600
_UMASK = 0o077
_umask_lock = threading.Lock()


@contextlib.contextmanager
def private_umask() -> Iterator[None]:
    """Umask 0o077 for the duration (process-wide, so it can only make others' files stricter)."""
    with _umask_lock:
        old = os.umask(_UMASK)
        try:
            yield
        finally:
            os.umask(old)


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) and make it 0700."""
    with private_umask():
        path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    os.chmod(path, DIR_MODE)
    return path


def create_private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 (so a library that opens it keeps the mode)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)


def open_private_append(path: Path) -> IO[str]:
    """A text file opened for appending, created 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    return os.fdopen(fd, "a", encoding="utf-8")


def write_private_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename), mode 0600."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, path)


def write_private_json(path: Path, data: Mapping[str, Any]) -> None:
    """``data`` as indented JSON, atomically, mode 0600."""
    text = json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n"
    write_private_bytes(path, text.encode("utf-8"))


def tree_size(path: Path) -> int:
    """Bytes in the regular files under ``path`` (0 if it is gone)."""
    total = 0
    for dirpath, _, names in os.walk(path):
        for name in names:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total
