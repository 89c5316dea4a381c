"""Recorder: every frame to video and journal, findings and keyframes, sockets, failures."""

from __future__ import annotations

import errno
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from recording_fakes import META, stream

from pivh_live.errors import RecordingError
from pivh_live.media import iter_frames
from pivh_live.recording import SessionStore
from pivh_live.recording.recorder import Recorder
from pivh_live.recording.video import RegionVideoWriter

GRADES = [0] * 20 + [3] * 40 + [0] * 40  # one lesion pass at 30 fps


def _recorder(tmp_path: Path, **kw: Any) -> Recorder:
    kw.setdefault("retention", None)
    kw.setdefault("min_free_bytes", 0)
    kw.setdefault("queue_size", 100_000)  # tests feed faster than real time
    return Recorder(META, SessionStore(tmp_path / "data"), **kw)


def test_every_frame_reaches_video_and_journal(tmp_path: Path) -> None:
    rec = _recorder(tmp_path)
    assert rec.needs_frames and rec.needs_record  # one process: frames come with results
    items = list(stream(GRADES))
    for region, result in items:
        rec.on_result(region, result)
    rec.close()
    store, sid = rec.store, rec.session_id
    decoded = list(iter_frames(store.video_path(sid)))
    lines = list(store.frames(sid))
    assert len(decoded) == len(lines) == len(GRADES) == rec.status().frames
    assert [r["frame"] for r in lines] == list(range(len(GRADES)))
    # Video time is capture time from the first frame: pts in ms.
    assert [f.t for f in decoded] == pytest.approx([i / 30 for i in range(len(GRADES))], abs=6e-4)
    for f, (region, _) in zip(decoded[::10], items[::10], strict=True):
        assert np.abs(f.image.astype(int) - region.image).mean() < 4.0  # crf 18, full range
    state = items[-1][1].state
    info = store.get(sid)
    assert (info.status, info.frames, info.worst_grade, info.alerts) == (
        "complete", len(GRADES), state.worst_grade, state.n_alert_onsets,
    )  # fmt: skip
    assert state.n_alert_onsets == 1 and state.worst_grade == 3
    last = lines[-1]
    assert last["worst_grade"] == 3 and last["alert_onsets"] == 1
    assert last["t_capture_ns"] == items[-1][1].t_capture_ns and "latency_ms" in last
    st = rec.status()
    assert (st.recording, st.missed, st.queue_dropped, st.warning) == (False, 0, 0, None)


def test_findings_and_keyframes_follow_the_smoother(tmp_path: Path) -> None:
    rec = _recorder(tmp_path)
    items = list(stream(GRADES))
    for region, result in items:
        rec.on_result(region, result)
    rec.close()
    onset = next(r for _, r in items if r.state.alert)
    peak = items[-1][1].state.best_evidence
    findings = rec.store.findings(rec.session_id)
    kinds = {(f.kind, f.grade, f.seq) for f in findings}
    assert ("alert_onset", onset.state.grade, onset.seq) in kinds
    assert ("worst_grade", 3, peak.seq) in kinds
    by_seq = {region.seq: region for region, _ in items}
    for k in rec.store.keyframes(rec.session_id):
        import cv2

        png = cv2.imread(str(rec.store.keyframe_path(rec.session_id, k.seq)), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(png, by_seq[k.seq].image)  # the very region, lossless
        assert k.t_s == pytest.approx(k.seq / 30, abs=1e-6)


def test_a_keyframe_that_left_the_ring_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The worst grade is shown grade_min_s after the frames that built it; its
    # evidence frame is still buffered with the default 1.5 s ring, not with 0.1 s.
    for ring_s, warned in ((1.5, False), (0.1, True)):
        caplog.clear()
        rec = _recorder(tmp_path / str(ring_s), ring_s=ring_s)
        items = list(stream(GRADES, fading=True))
        for region, result in items:
            rec.on_result(region, result)
        rec.close()
        peak = items[-1][1].state.best_evidence
        shown = next(r for _, r in items if r.state.worst_grade == 3)
        assert shown.t_capture_ns - peak.t_ns > 100_000_000  # the evidence came first
        assert ("worst_grade keyframe" in caplog.text) is warned


def test_keyframes_are_bounded_but_worst_grades_kept(tmp_path: Path) -> None:
    rec = _recorder(tmp_path, max_keyframes=1)
    grades = ([0] * 90 + [1] * 40) * 3 + [0] * 90 + [4] * 40
    items = list(stream(grades))
    for region, result in items:
        rec.on_result(region, result)
    rec.close()
    meta = rec.store.meta(rec.session_id)
    onsets = items[-1][1].state.n_alert_onsets
    assert onsets >= 3 and meta["alerts"] == onsets
    kinds = [k.kind for k in rec.store.keyframes(rec.session_id)]
    assert meta["keyframes_skipped"] >= onsets - 2
    assert kinds.count("worst_grade") == 2  # grade I then IV, both kept beyond the limit
    assert meta["keyframes"] <= 1 + 4


def test_frames_arrive_over_the_record_socket(tmp_path: Path) -> None:
    from pivh_live.pipeline.config import Endpoints
    from pivh_live.pipeline.messages import region_to_message
    from pivh_live.transport import ReliablePusher

    endpoints = Endpoints.for_run(f"recsock{os.getpid()}")
    rec = _recorder(tmp_path)
    rec.attach(endpoints)
    assert not rec.needs_frames  # the host must not subscribe to frames for it
    items = list(stream(GRADES))
    with ReliablePusher(endpoints.record, name="capture", send_timeout_ms=5000) as push:
        for region, result in items:
            push.send(region_to_message(region))
            rec.on_result(None, result)
        assert push.flush(5.0)
        rec.close()
    endpoints.remove_files()
    st = rec.status()
    assert (st.frames, st.results, st.missed) == (len(GRADES), len(GRADES), 0)
    assert len(list(iter_frames(rec.store.video_path(rec.session_id)))) == len(GRADES)
    assert len(rec.store.keyframes(rec.session_id)) >= 2  # regions from the socket's ring


def test_a_full_queue_drops_and_counts_instead_of_blocking(tmp_path: Path) -> None:
    import threading

    release = threading.Event()

    class StuckVideo(RegionVideoWriter):
        def write(self, image: np.ndarray, t_ns: int, t0_ns: int | None = None) -> None:
            release.wait(30)  # a disk that hangs
            super().write(image, t_ns, t0_ns)

    rec = _recorder(tmp_path, queue_size=4, video_factory=StuckVideo)
    for region, result in stream(GRADES[:20]):
        rec.on_result(region, result)  # returns at once although the writer is stuck
    dropped = rec.status().queue_dropped
    release.set()
    rec.close()
    st = rec.status()
    assert dropped >= 20 - 4 - 1 and st.queue_dropped == dropped
    assert st.frames == st.results == 20 - dropped


def test_statuses_are_journalled(tmp_path: Path) -> None:
    from pivh_live.pipeline.results import PipelineStatus

    rec = _recorder(tmp_path)
    rec.on_status(PipelineStatus(5, "no_signal", "no frames for 2 s", (("capture", "running"),)))
    rec.close()
    [event] = [e for e in rec.store.events(rec.session_id) if e["event"] == "status"]
    assert event["source_state"] == "no_signal" and event["display_status"] == "no_signal"
    assert event["stages"] == [["capture", "running"]]


class _FailingVideo(RegionVideoWriter):
    """The real writer that hits ENOSPC (or another error) after ``ok`` frames."""

    def __init__(self, path: Path, ok: int, exc: Exception) -> None:
        super().__init__(path)
        self.ok, self.exc = ok, exc

    def write(self, image: np.ndarray, t_ns: int, t0_ns: int | None = None) -> None:
        if self.frames >= self.ok:
            raise self.exc
        super().write(image, t_ns, t0_ns)


def test_a_full_disk_stops_recording_cleanly(tmp_path: Path) -> None:
    full = OSError(errno.ENOSPC, "No space left on device")
    rec = _recorder(tmp_path, video_factory=lambda p: _FailingVideo(p, 45, full))
    for region, result in stream(GRADES):
        rec.on_result(region, result)  # never raises into the pipeline
    rec.close()
    st = rec.status()
    assert not st.recording and "disk full" in st.warning and "\n" not in st.warning
    info = rec.store.get(rec.session_id)
    assert info.status == "stopped_disk_full" and info.frames == 45
    meta = rec.store.meta(rec.session_id)
    assert meta["status"] == "stopped_disk_full" and meta["warning"] == st.warning
    # Nothing before the failure is lost: 45 decodable frames, their results journalled.
    assert len(list(iter_frames(rec.store.video_path(rec.session_id)))) == 45
    assert len(list(rec.store.frames(rec.session_id))) >= 44
    assert rec.store.recover() == []  # the session is not mistaken for a crash


def test_a_failing_journal_stops_recording_and_keeps_the_video(tmp_path: Path) -> None:
    class FullFile:
        def __init__(self, path: Path) -> None:
            from pivh_live.recording.files import open_private_append

            self.f, self.n = open_private_append(path), 0

        def write(self, text: str) -> int:
            self.n += 1
            if self.n > 30:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.f.write(text)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.f, name)

    rec = _recorder(tmp_path, journal_opener=FullFile)
    for region, result in stream(GRADES):
        rec.on_result(region, result)
    rec.close()
    assert rec.store.get(rec.session_id).status == "stopped_disk_full"
    n_video = len(list(iter_frames(rec.store.video_path(rec.session_id))))
    assert 25 <= n_video <= 31  # closed properly after the failure: every encoded frame
    assert len(list(rec.store.frames(rec.session_id))) <= 30


def test_an_unexpected_error_marks_the_session_interrupted(tmp_path: Path) -> None:
    bug = ValueError("bad frame")
    rec = _recorder(tmp_path, video_factory=lambda p: _FailingVideo(p, 3, bug))
    for region, result in stream(GRADES[:10]):
        rec.on_result(region, result)
    rec.close()
    assert rec.store.get(rec.session_id).status == "interrupted"
    assert "bad frame" in rec.warning


def test_refuses_to_start_on_a_nearly_full_disk(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="free") as info:
        _recorder(tmp_path, min_free_bytes=1 << 62)
    assert "\n" not in str(info.value)
    assert SessionStore(tmp_path / "data").list_sessions() == []


def test_disk_warning_and_stop_while_recording(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    free = {"bytes": 1 << 40}
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(1 << 41, 0, free["bytes"]))
    rec = _recorder(tmp_path, min_free_bytes=1 << 20, disk_check_s=0.0)
    items = list(stream(GRADES))
    for region, result in items[:10]:
        rec.on_result(region, result)
    free["bytes"] = 1 << 30  # 1 GiB: warn, keep recording
    for region, result in items[10:20]:
        rec.on_result(region, result)
    deadline = __import__("time").monotonic() + 10
    while rec.warning is None and __import__("time").monotonic() < deadline:
        rec._thread.join(0.01)  # let the writer thread run a check
    assert rec.warning and "disk nearly full" in rec.warning and rec.status().recording
    free["bytes"] = 1 << 10  # below the hard minimum: stop before the disk is full
    for region, result in items[20:]:
        rec.on_result(region, result)
    rec.close()
    assert rec.store.get(rec.session_id).status == "stopped_disk_full"
    assert json.loads((rec.session.dir / "session.json").read_text())["warning"] == rec.warning


def test_an_io_error_on_a_disk_with_no_room_counts_as_disk_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLite reports "disk I/O error" (not ENOSPC) when its journal cannot grow.
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    free = {"bytes": 1 << 40}
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(1 << 41, 0, free["bytes"]))
    io_error = sqlite3.OperationalError("disk I/O error")

    class NoRoom(_FailingVideo):
        def write(self, image, t_ns, t0_ns) -> None:
            if self.frames >= self.ok:
                free["bytes"] = 1 << 10
            super().write(image, t_ns, t0_ns)

    rec = _recorder(tmp_path, video_factory=lambda p: NoRoom(p, 20, io_error))
    for region, result in stream(GRADES[:40]):
        rec.on_result(region, result)
    rec.close()
    assert rec.store.get(rec.session_id).status == "stopped_disk_full"
    assert rec.warning.startswith("RECORDING STOPPED: disk full")


def test_an_io_error_with_room_left_is_not_called_a_full_disk(tmp_path: Path) -> None:
    io_error = sqlite3.OperationalError("disk I/O error")
    rec = _recorder(tmp_path, video_factory=lambda p: _FailingVideo(p, 20, io_error))
    for region, result in stream(GRADES[:40]):
        rec.on_result(region, result)
    rec.close()
    assert rec.store.get(rec.session_id).status == "interrupted"
    assert "disk I/O error" in rec.warning
