"""Keeping the disk from filling: retention of old sessions and a free-space check.

`apply_retention` deletes the oldest sessions first, by age and then by the
total size of the store, and never one being recorded. `disk_status` gives
a warning to show while there is still room (below 2 GiB or 5 % free) and
`require_free_space` refuses to start a recording below a hard minimum
(512 MiB), so a recording never starts on a nearly full disk.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from pivh_live.errors import RecordingError
from pivh_live.recording.files import tree_size
from pivh_live.recording.store import SessionStore, parse_iso_utc

log = logging.getLogger(__name__)

GIB = 1 << 30
MIB = 1 << 20
WARN_FREE_BYTES = 2 * GIB
WARN_FREE_FRACTION = 0.05
MIN_FREE_BYTES = 512 * MIB


@dataclass(frozen=True)
class RetentionPolicy:
    """Delete sessions older than ``max_age_days`` and, oldest first, beyond ``max_total_bytes``.

    None disables a limit.
    """

    max_age_days: float | None = 30.0
    max_total_bytes: int | None = 100 * GIB


@dataclass(frozen=True)
class DiskStatus:
    """Free space where sessions are written; ``warning`` is set below the warning threshold."""

    free_bytes: int
    total_bytes: int
    warning: str | None

    @property
    def free_fraction(self) -> float:
        return self.free_bytes / self.total_bytes if self.total_bytes else 0.0


def _existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def disk_status(
    root: str | Path,
    *,
    warn_bytes: int = WARN_FREE_BYTES,
    warn_fraction: float = WARN_FREE_FRACTION,
) -> DiskStatus:
    """Free space on the file system holding ``root`` (or its nearest existing parent)."""
    usage = shutil.disk_usage(_existing(Path(root)))
    free, total = int(usage.free), int(usage.total)
    warning = None
    if free < warn_bytes or (total and free / total < warn_fraction):
        warning = (
            f"disk nearly full: {format_bytes(free)} ({100 * free / max(total, 1):.0f}%) free "
            f"for recordings in {root}; delete old sessions (review app) or free space"
        )
    return DiskStatus(free, total, warning)


def require_free_space(root: str | Path, min_bytes: int = MIN_FREE_BYTES) -> DiskStatus:
    """`disk_status`, or `RecordingError` if less than ``min_bytes`` is free."""
    status = disk_status(root)
    if status.free_bytes < min_bytes:
        raise RecordingError(
            f"only {format_bytes(status.free_bytes)} free for recordings in {root}, need at least "
            f"{format_bytes(min_bytes)}; delete old sessions (review app, --keep-days), free "
            "space, or set PIVH_LIVE_DATA to a larger disk"
        )
    return status


def apply_retention(
    store: SessionStore,
    policy: RetentionPolicy,
    *,
    active: Collection[str] = (),
    now: float | None = None,
) -> list[str]:
    """Delete sessions the policy no longer keeps, oldest first; returns their ids.

    Sessions in ``active``, being recorded (locked) or still marked
    ``recording`` are never deleted, but their size counts toward the total.
    """
    now = time.time() if now is None else now
    sessions = sorted(store.list_sessions(), key=lambda s: (s.started, s.id))  # oldest first

    def protected(session_id: str, status: str) -> bool:
        return session_id in active or status == "recording" or store.is_active(session_id)

    deleted: list[str] = []
    kept = []
    for s in sessions:
        expired = (
            policy.max_age_days is not None
            and now - parse_iso_utc(s.started) > policy.max_age_days * 86400
        )
        if expired and not protected(s.id, s.status):
            store.delete(s.id)
            deleted.append(s.id)
        else:
            kept.append(s)
    if policy.max_total_bytes is not None:
        sizes = {s.id: tree_size(store.sessions_dir / s.id) for s in kept}
        total = sum(sizes.values())
        for s in kept:
            if total <= policy.max_total_bytes:
                break
            if protected(s.id, s.status):
                continue
            store.delete(s.id)
            deleted.append(s.id)
            total -= sizes[s.id]
    if deleted:
        log.info("retention deleted %d old session(s): %s", len(deleted), ", ".join(deleted))
    return deleted


def format_bytes(n: int) -> str:
    if n >= GIB:
        return f"{n / GIB:.1f} GiB"
    return f"{n / MIB:.0f} MiB"
