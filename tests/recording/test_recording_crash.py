"""Crash safety: a recorder killed with SIGKILL loses at most about a second; a real full disk.

Both run a recorder on real files; slow. The full-disk test needs root (it
mounts a 3 MiB tmpfs) and is skipped elsewhere.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from recording_fakes import META, stream

from pivh_live.media import iter_frames
from pivh_live.recording import SessionStore
from pivh_live.recording.recorder import Recorder

FPS = 30
HERE = Path(__file__).parent


@pytest.mark.slow
def test_sigkill_loses_at_most_about_one_second(tmp_path: Path) -> None:
    root = tmp_path / "data"
    code = (
        f"import sys; sys.path.insert(0, {str(HERE)!r}); "
        f"from recording_fakes import record_in_real_time; record_in_real_time({str(root)!r})"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        session_id = proc.stdout.readline().split()[1]
        while (queued := int(proc.stdout.readline())) < 4 * FPS:
            pass
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    store = SessionStore(root)
    video = store.session_dir(session_id) / "video.mp4"
    decoded = list(iter_frames(video))
    lines = list(store.frames(session_id))  # parses: a cut last line is skipped
    assert [r["frame"] for r in lines] == list(range(len(lines)))
    last_line = lines[-1]["frame"]
    # Frames 0..queued were handed to the recorder; about 1 s may be lost.
    assert queued - last_line <= FPS + 3
    assert queued - (len(decoded) - 1) <= FPS + 3
    assert abs(last_line - (len(decoded) - 1)) <= FPS
    assert decoded[-1].t == pytest.approx((len(decoded) - 1) / FPS, abs=2e-3)
    # The next start finds it and rebuilds its index row from the files.
    assert store.get(session_id).status == "recording"
    assert store.recover() == [session_id]
    info = store.get(session_id)
    assert info.status == "interrupted" and info.frames == len(decoded)
    assert info.alerts == 1 and info.worst_grade == 3
    assert info.duration_s == pytest.approx(last_line / FPS, abs=0.05)
    assert {f.kind for f in store.findings(session_id)} == {"alert_onset", "worst_grade"}


def _mount_tmpfs(path: Path, size: str) -> bool:
    if os.geteuid() != 0:
        return False
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, check=False)  # fmt: skip
    return done.returncode == 0


@pytest.mark.slow
def test_a_really_full_disk(tmp_path: Path) -> None:
    mnt = tmp_path / "small"
    if not _mount_tmpfs(mnt, "3m"):
        pytest.skip("needs root and mount to make a small tmpfs")
    try:
        store = SessionStore(mnt / "data")
        rec = Recorder(META, store, retention=None, min_free_bytes=0, queue_size=100_000)
        for region, result in stream([0] * 30 + [3] * 300, size=(240, 320)):
            rec.on_result(region, result)
        rec.close()
        st = rec.status()
        assert not st.recording and "disk full" in (st.warning or "")
        # The disk reserve made room for the final metadata, journal line and index row.
        meta = json.loads((store.session_dir(rec.session_id) / "session.json").read_text())
        assert meta["status"] == store.get(rec.session_id).status == "stopped_disk_full"
        assert [e["event"] for e in store.events(rec.session_id)][-1] == "stopped"
        n_lines = len(list(store.frames(rec.session_id)))
        n_video = len(list(iter_frames(store.video_path(rec.session_id))))
        assert n_lines == st.results and 0 < n_video <= st.frames
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
