"""SessionStore: ids, layout and modes, index round trip, tolerant journal reading, recovery."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import numpy as np
import pytest

from pivh_live.errors import PivhError
from pivh_live.recording import (
    InvalidSessionIdError,
    SessionBusyError,
    SessionMeta,
    SessionStore,
    UnknownSessionError,
    data_root,
    source_kind_of,
    validate_session_id,
)
from pivh_live.recording.store import new_session_id

META = SessionMeta("phantom", "tiny", "0.0.1", "ab" * 32, "fake", (1, 2, 30, 40), 25.0)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(
    "bad",
    [
        "..",
        "../20240501-134502-9f3a",
        "20240501-134502-9f3a/..",
        "20240501-134502-9f3a/x",
        "/etc/passwd",
        "20240501-134502-9f3a\x00",
        "20240501-134502-9F3A",
        "20240501-134502-9f3",
        "20240501-134502-9f3a\n",
        "",
        "2024050-134502-9f3a",
        None,
        20240501,
    ],
)
def test_bad_session_ids_are_rejected_everywhere(tmp_path: Path, bad: object) -> None:
    store = SessionStore(tmp_path)
    with pytest.raises(InvalidSessionIdError) as info:
        validate_session_id(bad)
    assert "\n" not in str(info.value) and isinstance(info.value, PivhError)
    for call in (
        store.get,
        store.video_path,
        store.findings,
        store.keyframes,
        store.delete,
        store.meta,
        lambda s: list(store.frames(s)),
        lambda s: store.keyframe_path(s, 0),
    ):
        with pytest.raises(InvalidSessionIdError):
            call(bad)  # type: ignore[operator]


def test_new_ids_have_the_documented_form() -> None:
    ids = {new_session_id() for _ in range(50)}
    assert all(re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{4}", i) for i in ids)
    assert len(ids) > 1  # the random part varies
    assert all(validate_session_id(i) == i for i in ids)


def test_data_root_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PIVH_LIVE_DATA", str(tmp_path / "d"))
    assert data_root() == tmp_path / "d"
    monkeypatch.delenv("PIVH_LIVE_DATA")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "x"))
    assert data_root() == tmp_path / "x" / "pivh-live"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    assert data_root() == tmp_path / "h" / ".local" / "share" / "pivh-live"


def test_source_kind_keeps_only_the_scheme() -> None:
    assert source_kind_of("/data/Jane_Doe_2024-05-01.mp4") == "file"
    assert source_kind_of("file:/data/DOE^JANE/clip.mp4?loop=1") == "file"
    assert source_kind_of("v4l2:/dev/video0?format=mjpeg") == "v4l2"
    assert source_kind_of("phantom:?seed=3") == "phantom"
    assert source_kind_of("nonsense-scheme:x") == "unknown"


def _write_session(store: SessionStore, n: int = 5):
    w = store.new_session(META)
    t0 = 5 * 10**9
    for i in range(n):
        t = t0 + i * 40_000_000
        w.video_frame(t, 30, 40)
        g, alerts = min(i, 3), i // 3
        record = {"frame": i, "t_capture_ns": t, "grade": g}
        record.update(worst_grade=g, alert_onsets=alerts)
        w.write_frame_line(record, g, alerts)
    w.add_finding(3, t0 + 120_000_000, 3, 0.8, "alert_onset")
    w.add_keyframe(3, t0 + 120_000_000, 3, 0.8, "alert_onset", np.full((40, 30), 77, np.uint8))
    w.add_keyframe(3, t0 + 120_000_000, 3, 0.8, "worst_grade", np.full((40, 30), 77, np.uint8))
    return w


def test_round_trip_and_private_modes(tmp_path: Path) -> None:
    os.umask(0o022)  # a permissive umask must not leak into the store
    store = SessionStore(tmp_path / "root")
    w = _write_session(store)
    assert store.is_active(w.id) and store.get(w.id).status == "recording"
    w.tick(force_index=True)
    assert store.get(w.id).frames == 5  # the index follows the recording
    w.finish()
    assert not store.is_active(w.id)
    info = store.get(w.id)
    assert (info.status, info.frames, info.worst_grade, info.alerts) == ("complete", 5, 3, 1)
    assert info.duration_s == pytest.approx(0.16)
    assert (info.model, info.engine, info.source_kind) == ("tiny 0.0.1", "fake", "phantom")
    assert [s.id for s in store.list_sessions()] == [w.id]
    [f] = store.findings(w.id)
    assert (f.seq, f.t_s, f.grade, f.p, f.kind) == (3, 0.12, 3, 0.8, "alert_onset")
    k1, k2 = store.keyframes(w.id)
    assert k1.path == k2.path == "keyframes/3.png"  # one file for two findings on a frame
    assert (k1.kind, k2.kind) == ("alert_onset", "worst_grade")
    png = store.keyframe_path(w.id, 3)
    import cv2

    assert np.array_equal(cv2.imread(str(png), cv2.IMREAD_UNCHANGED), np.full((40, 30), 77))
    assert [r["frame"] for r in store.frames(w.id)] == [0, 1, 2, 3, 4]
    assert {e["event"] for e in store.events(w.id)} >= {"finding", "keyframe", "progress"}
    meta = store.meta(w.id)
    assert meta["status"] == "complete" and meta["roi"] == [1, 2, 30, 40]
    assert meta["model"]["sha256"] == "ab" * 32 and "NOT FOR DIAGNOSIS" in meta["disclaimer"]
    assert meta["t0_capture_ns"] == 5 * 10**9
    for path in [store.root, *store.root.rglob("*")]:
        expected = 0o700 if path.is_dir() else 0o600
        assert _mode(path) == expected, path


def test_unknown_sessions_and_busy_delete(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    assert store.list_sessions() == []
    with pytest.raises(UnknownSessionError, match="no session 20240501-134502-9f3a"):
        store.get("20240501-134502-9f3a")
    with pytest.raises(UnknownSessionError):
        store.delete("20240501-134502-9f3a")
    w = _write_session(store)
    with pytest.raises(UnknownSessionError, match="no video"):
        store.video_path(w.id)
    with pytest.raises(SessionBusyError):
        store.delete(w.id)
    w.finish()
    store.delete(w.id)
    assert not store.session_dir(w.id).exists() and store.list_sessions() == []
    with pytest.raises(UnknownSessionError):
        store.findings(w.id)


def test_frames_tolerate_a_cut_last_line_and_skip_a_corrupt_one(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    w = _write_session(store, n=3)
    w.finish()
    journal = store.session_dir(w.id) / "frames.jsonl"
    lines = journal.read_bytes().splitlines(keepends=True)
    lines.insert(1, b"{not json\n")
    journal.write_bytes(b"".join(lines) + b'{"frame": 99, "t_capt')
    assert [r["frame"] for r in store.frames(w.id)] == [0, 1, 2]


def test_recover_marks_a_crashed_session_and_rebuilds_it(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    w = _write_session(store, n=7)
    w.journal.close()  # what reached the disk before the crash
    w._unlock()  # the kernel drops the lock of a killed process
    # The index knew nothing yet (no tick): counts come from the journal.
    assert store.get(w.id).frames == 0
    assert store.recover() == [w.id]
    info = store.get(w.id)
    assert (info.status, info.worst_grade, info.alerts) == ("interrupted", 3, 2)
    assert info.duration_s == pytest.approx(0.24)
    assert [f.kind for f in store.findings(w.id)] == ["alert_onset"]
    assert [k.kind for k in store.keyframes(w.id)] == ["alert_onset", "worst_grade"]
    assert store.meta(w.id)["status"] == "interrupted"
    assert not (store.session_dir(w.id) / ".reserve").exists()
    assert store.recover() == []  # idempotent


def test_recover_leaves_live_sessions_and_repairs_the_index(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    live = _write_session(store)
    done = _write_session(store)
    done.finish()
    (store.root / "index.sqlite").unlink()  # index lost: rebuilt from the directories
    gone = store.sessions_dir / "20200101-000000-abcd"
    assert store.recover() == []
    assert store.get(done.id).status == "complete"
    assert store.get(live.id).status == "recording"  # its recorder still holds the lock
    gone.mkdir()  # a directory without session.json is not indexed
    store.recover()
    with pytest.raises(UnknownSessionError):
        store.get(gone.name)
    live.finish()
    import shutil

    shutil.rmtree(store.session_dir(done.id))
    store.recover()  # rows without a directory are dropped
    assert [s.id for s in store.list_sessions()] == [live.id]


def test_session_json_holds_no_source_path(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    meta = SessionMeta(source_kind_of("/data/DOE^JANE/clip.mp4"), engine="fake")
    w = store.new_session(meta)
    w.finish()
    text = (store.session_dir(w.id) / "session.json").read_text()
    assert "DOE" not in text and "/data" not in text
    assert json.loads(text)["source_kind"] == "file"


def test_keyframe_numbers_from_outside_are_checked(tmp_path: Path) -> None:
    from pivh_live.recording import SessionError

    store = SessionStore(tmp_path)
    w = _write_session(store)
    w.finish()
    for bad in ("../x", "3/../../etc", None):
        with pytest.raises(SessionError):
            store.keyframe_path(w.id, bad)  # type: ignore[arg-type]
    with pytest.raises(UnknownSessionError):
        store.keyframe_path(w.id, 4)
    assert store.keyframe_path(w.id, "3") == store.session_dir(w.id) / "keyframes" / "3.png"
