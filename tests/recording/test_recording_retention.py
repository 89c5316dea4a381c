"""Retention (age, total size, never the active session) and the free-space checks."""

from __future__ import annotations

import shutil
from collections import namedtuple
from pathlib import Path

import pytest

from pivh_live.errors import RecordingError
from pivh_live.recording import SessionMeta, SessionStore
from pivh_live.recording.retention import (
    GIB,
    RetentionPolicy,
    apply_retention,
    disk_status,
    require_free_space,
)
from pivh_live.recording.store import parse_iso_utc

Usage = namedtuple("Usage", "total used free")
DAY = 86400.0


def _sessions(store: SessionStore, sizes: list[int]) -> list[str]:
    """Finished sessions, oldest first, each with ``size`` bytes of video."""
    ids = []
    for size in sizes:
        w = store.new_session(SessionMeta("phantom"), reserve_bytes=0)
        w.video_path.write_bytes(b"\0" * size)
        w.finish()
        ids.append(w.id)
    return ids


def _age(store: SessionStore, ids: list[str]) -> dict[str, float]:
    return {i: parse_iso_utc(store.get(i).started) for i in ids}


def test_old_sessions_go_first_and_the_active_one_stays(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    ids = _sessions(store, [1000, 1000, 1000])
    active = store.new_session(SessionMeta("phantom"), reserve_bytes=0)
    now = max(_age(store, ids).values()) + 40 * DAY
    deleted = apply_retention(store, RetentionPolicy(max_age_days=30, max_total_bytes=None),
                              now=now)  # fmt: skip
    assert sorted(deleted) == sorted(ids)
    assert [s.id for s in store.list_sessions()] == [active.id]
    assert store.session_dir(active.id).exists()
    active.finish()


def test_total_size_deletes_oldest_first(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    ids = _sessions(store, [50_000, 50_000, 50_000, 50_000])
    policy = RetentionPolicy(max_age_days=None, max_total_bytes=120_000)
    deleted = apply_retention(store, policy)
    assert deleted == ids[:2]  # 4 x ~50 kB -> 2 x ~50 kB fit
    assert {s.id for s in store.list_sessions()} == set(ids[2:])
    assert apply_retention(store, policy) == []


def test_size_limit_never_deletes_protected_sessions(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    ids = _sessions(store, [50_000, 50_000])
    live = store.new_session(SessionMeta("phantom"), reserve_bytes=0)
    live.video_path.write_bytes(b"\0" * 500_000)
    deleted = apply_retention(store, RetentionPolicy(None, 10_000), active={ids[1]})
    assert deleted == [ids[0]]  # the only one that may go; still over the limit
    assert {s.id for s in store.list_sessions()} == {ids[1], live.id}
    live.finish()


def test_disk_status_warns_before_the_disk_fills(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    usage = {"u": Usage(100 * GIB, 0, 50 * GIB)}
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage["u"])
    assert disk_status(tmp_path / "not" / "yet").warning is None  # nearest existing parent
    usage["u"] = Usage(100 * GIB, 0, 3 * GIB)  # 3 % free, more than 2 GiB
    st = disk_status(tmp_path)
    assert st.warning and "3.0 GiB (3%)" in st.warning and st.free_fraction == 0.03
    usage["u"] = Usage(10 * GIB, 0, GIB)  # 10 % free but under 2 GiB
    assert disk_status(tmp_path).warning
    usage["u"] = Usage(10 * GIB, 0, 100 << 20)
    with pytest.raises(RecordingError, match=r"only 100 MiB free .* need at least 512 MiB"):
        require_free_space(tmp_path)
    assert require_free_space(tmp_path, min_bytes=50 << 20).free_bytes == 100 << 20
