#!/usr/bin/env python3
"""Fault drills against a real ``pivh-live run``, done the way a user would do them by hand.

    python scripts/fault_drill.py                      # every drill, figures on stdout
    python scripts/fault_drill.py kill-inference stall --json drills.json

Each drill starts ``pivh-live run`` (phantom scanner, ONNX Runtime, web
display on a free localhost port, recording into a fresh session store),
waits until the page shows scores, does one bad thing to it, watches
``/live/state`` and the session store, and reports what happened and when.
Drills: kill-inference, kill-capture, kill-app, stall (a UDP stream whose
sender is paused with SIGSTOP, then killed and restarted), disk-full (a small
tmpfs; root only), bad-messages (garbage sent into the frames socket by
another process), resize (a stream that switches 1280x720 -> 1920x1080).
docs/reliability.md has the figures. tests/reliability runs the same drills.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

POLL_S = 0.05
SCORING = "scoring"
REPO = Path(__file__).resolve().parent.parent


class DrillError(RuntimeError):
    """A drill could not be carried out (not a finding about the app)."""


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(pred: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise DrillError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        threading.Event().wait(POLL_S)


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def children(pid: int) -> dict[str, int]:
    """Child processes of ``pid`` by process name (stages are ``pivh-capture``, ...)."""
    out: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out[_comm(int(entry.name))] = int(entry.name)
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class App:
    """One ``pivh-live run`` in its own session store, driven over its web page."""

    def __init__(self, workdir: Path, *args: str, data_dir: Path | None = None) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.data_dir = data_dir or workdir / "data"
        self.log_path = workdir / f"run-{self.port}.log"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("PIVH_LIVE_TOKEN", None)
        cmd = [sys.executable, "-m", "pivh_live", "run", "--port", str(self.port),
               "--data-dir", str(self.data_dir), "--status-every", "1", *args]  # fmt: skip
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=2.0)

    def state(self) -> dict[str, Any] | None:
        try:
            r = self.client.get("/live/state")
        except httpx.HTTPError:
            return None
        return r.json() if r.status_code == 200 else None

    def wait_state(self, pred: Callable[[dict[str, Any]], bool], timeout_s: float, what: str):
        def check() -> dict[str, Any] | None:
            if self.proc.poll() is not None:
                raise DrillError(f"pivh-live run exited ({self.proc.returncode}): {self.tail()}")
            s = self.state()
            return s if s is not None and pred(s) else None

        return _wait(check, timeout_s, what)

    def wait_scoring(self, timeout_s: float = 120.0) -> dict[str, Any]:
        return self.wait_state(lambda s: s["state"] == SCORING, timeout_s, "scores on the page")

    def stage(self, name: str) -> int:
        return _wait(lambda: children(self.proc.pid).get(f"pivh-{name}"), 30, f"the {name} stage")

    def tail(self, n: int = 5) -> str:
        lines = self.log_path.read_text(errors="replace").splitlines()
        return " | ".join(lines[-n:])

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout_s: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.client.close()
        self._log.close()
        return int(self.proc.returncode)

    def session(self) -> tuple[Any, str]:
        from pivh_live.recording import SessionStore

        store = SessionStore(self.data_dir)
        sessions = store.list_sessions()
        if len(sessions) != 1:
            raise DrillError(f"expected one recorded session, found {len(sessions)}")
        return store, sessions[0].id


@contextlib.contextmanager
def running(workdir: Path, *args: str, **kw: Any) -> Iterator[App]:
    app = App(workdir, *args, **kw)
    try:
        yield app
    finally:
        app.stop()


def _recorded_gaps(app: App) -> dict[str, Any]:
    """What the session holds: journal lines, video frames and the longest gap in the video."""
    from pivh_live.media import iter_frames

    store, sid = app.session()
    rows = sum(1 for _ in store.frames(sid))
    t = [f.t for f in iter_frames(store.video_path(sid))]
    gaps = [b - a for a, b in itertools.pairwise(t)]
    return {"journal_frames": rows, "video_frames": len(t),
            "video_max_gap_s": round(max(gaps), 3) if gaps else None,
            "session_status": store.get(sid).status}  # fmt: skip


def drill_kill_stage(workdir: Path, stage: str) -> dict[str, Any]:
    """SIGKILL one stage; time 'restarting' on the page and the first new score."""
    with running(workdir) as app:
        app.wait_scoring()
        pid = app.stage(stage)
        before = app.state()
        assert before is not None
        t0 = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        shown = app.wait_state(lambda s: s["state"] == "restarting", 20, "'restarting'")
        t_shown = time.monotonic() - t0
        resumed = app.wait_state(
            lambda s: s["state"] == SCORING and (s["seq"] or -1) > (before["seq"] or -1),
            30,
            "scores after the restart",
        )
        t_resumed = time.monotonic() - t0
        new_pid = app.stage(stage)
        # Let the recording run on a little past the restart, then stop cleanly.
        app.wait_state(lambda s: (s["seq"] or 0) > resumed["seq"] + 75, 30, "75 more frames")
        code = app.stop()
        gaps = _recorded_gaps(app)
        restarted_line = f"{stage} stopped (signal 9); restarting" in app.log_text()
    return {
        "drill": f"kill-{stage}",
        "restarting_shown_after_s": round(t_shown, 3),
        "banner_while_down": shown["banner"]["text"],
        "scores_resume_after_s": round(t_resumed, 3),
        "new_pid": new_pid != pid,
        "logged": restarted_line,
        "exit_code": code,
        **gaps,
    }


def drill_kill_app(workdir: Path, record_s: float = 6.0) -> dict[str, Any]:
    """SIGKILL ``pivh-live run`` itself while recording; check what is left on disk."""
    from pivh_live.media import iter_frames

    with running(workdir) as app:
        app.wait_scoring()
        stages = children(app.proc.pid)
        t_start = time.monotonic()
        _wait(lambda: time.monotonic() - t_start >= record_s, record_s + 5, "recording")
        last = app.state()
        assert last is not None
        os.kill(app.proc.pid, signal.SIGKILL)
        app.proc.wait()
        _wait(lambda: not any(alive(p) for p in stages.values()), 20,
              "the stages to exit after their supervisor died")  # fmt: skip
        store, sid = app.session()
        status_before = store.get(sid).status
        rows = list(store.frames(sid))
        decoded = sum(1 for _ in iter_frames(store.video_path(sid)))
        recovered = store.recover()
        info = store.get(sid)
    shown_seq = int(last["image_seq"] or 0)
    last_seq = int(rows[-1]["frame"]) if rows else -1
    fps = 25.0  # the phantom source's frame rate
    return {
        "drill": "kill-app",
        "stages_exited": sorted(stages),
        "journal_frames": len(rows),
        "video_frames": decoded,
        "last_frame_on_screen_before_kill": shown_seq,
        "last_frame_in_journal": last_seq,
        "lost_s_at_most": round(max(0, shown_seq - last_seq) / fps, 2),
        "status_before_recovery": status_before,
        "recovered": sid in recovered,
        "status_after_recovery": info.status,
    }


UDP_SENDER = r"""
import sys, time, av, cv2, numpy as np
from pivh_live.sources import open_source
port, w, h = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
src = open_source("phantom:?screen=1&seed=3&pace=fast")
frames = []
for _ in range(50):
    img = src.read().image
    img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.ndim == 2 else img
    frames.append(np.ascontiguousarray(cv2.resize(img, (w, h))))
src.close()
print("ready", flush=True)
with av.open(f"udp://127.0.0.1:{port}?pkt_size=1316", mode="w", format="mpegts") as out:
    st = out.add_stream("mpeg4", rate=25)
    st.width, st.height, st.pix_fmt, st.bit_rate = w, h, "yuv420p", 4_000_000
    t0, i = time.monotonic(), 0
    while True:
        vf = av.VideoFrame.from_ndarray(frames[i % len(frames)], format="bgr24")
        vf.pts = i
        for packet in st.encode(vf):
            out.mux(packet)
        i += 1
        time.sleep(max(0.0, t0 + i / 25 - time.monotonic()))
"""


def _sender(port: int, size: tuple[int, int] = (1280, 720)) -> subprocess.Popen:
    """A process streaming a phantom scanner screen to udp://127.0.0.1:port at 25 fps."""
    proc = subprocess.Popen(
        [sys.executable, "-c", UDP_SENDER, str(port), str(size[0]), str(size[1])],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise DrillError("the UDP sender did not start")
    return proc


def drill_stall(workdir: Path) -> dict[str, Any]:
    """Pause the stream's sender (SIGSTOP), resume it; then kill it and start a new one."""
    port = free_port(socket.SOCK_DGRAM)
    sender = _sender(port)
    try:
        src = f"udp://127.0.0.1:{port}?open_timeout=10&read_timeout=1"
        with running(workdir, "--source", src, "--no-record") as app:
            app.wait_scoring()
            t0 = time.monotonic()
            sender.send_signal(signal.SIGSTOP)
            ns = app.wait_state(lambda s: s["state"] == "no signal", 20, "NO SIGNAL")
            t_no_signal = time.monotonic() - t0
            t1 = time.monotonic()
            sender.send_signal(signal.SIGCONT)
            app.wait_scoring(30)
            t_back = time.monotonic() - t1
            sender.kill()
            sender.wait()
            t2 = time.monotonic()
            app.wait_state(
                lambda s: s["state"] == "no signal", 20, "NO SIGNAL after the sender died"
            )
            t_gone = time.monotonic() - t2
            sender = _sender(port)
            t3 = time.monotonic()
            app.wait_scoring(60)
            t_reconnect = time.monotonic() - t3
            code = app.stop()
    finally:
        sender.kill()
        sender.wait()
    return {
        "drill": "stall",
        "no_signal_after_stall_s": round(t_no_signal, 2),
        "banner": ns["banner"]["text"],
        "scores_after_resume_s": round(t_back, 2),
        "no_signal_after_sender_killed_s": round(t_gone, 2),
        "scores_after_new_sender_s": round(t_reconnect, 2),
        "exit_code": code,
    }


def drill_resize(workdir: Path) -> dict[str, Any]:
    """The scanner switches from 1280x720 to 1920x1080 output mid-session."""
    port = free_port(socket.SOCK_DGRAM)
    sender = _sender(port, (1280, 720))
    try:
        src = f"udp://127.0.0.1:{port}?open_timeout=10&read_timeout=1"
        with running(workdir, "--source", src, "--no-record") as app:
            app.wait_scoring()
            sender.kill()
            sender.wait()
            sender = _sender(port, (1920, 1080))
            t0 = time.monotonic()
            _wait(lambda: "receiving 1920x1080" in app.log_text(), 60, "1920x1080 frames")
            t_seen = time.monotonic() - t0
            seq0 = (app.state() or {}).get("seq") or 0
            app.wait_state(lambda s: s["state"] == SCORING and (s["seq"] or 0) > seq0 + 25, 30,
                           "scores after the switch")  # fmt: skip
            t_back = time.monotonic() - t0
            code = app.stop()
    finally:
        sender.kill()
        sender.wait()
    regions = [ln.split("image region ", 1)[1] for ln in app.log_text().splitlines()
               if "pivh_live.region: image region" in ln]  # fmt: skip
    return {"drill": "resize", "new_size_seen_after_s": round(t_seen, 2),
            "scores_after_switch_s": round(t_back, 2), "regions_found": regions,
            "exit_code": code}  # fmt: skip


def drill_disk_full(workdir: Path, size: str = "640m") -> dict[str, Any]:
    """Fill the recording disk (a tmpfs) while recording; the page must go on and say so."""
    from pivh_live.media import iter_frames

    mnt = workdir / "small"
    mnt.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True
        ).returncode
    ):
        raise DrillError("needs root and mount to make a small tmpfs")
    try:
        with running(workdir, data_dir=mnt / "data") as app:
            app.wait_scoring()
            _wait(lambda: (app.state() or {}).get("seq", 0) > 50, 30, "two seconds of recording")
            # Fill the disk as a big copy would, leaving 1 MiB.
            ballast = mnt / "ballast"
            with ballast.open("wb") as f:
                os.posix_fallocate(
                    f.fileno(), 0, os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize - 2**20
                )
            t0 = time.monotonic()
            warned = app.wait_state(lambda s: "RECORDING STOPPED" in (s.get("notice") or ""), 30,
                                    "the page to say recording stopped")  # fmt: skip
            t_warned = time.monotonic() - t0
            seq0 = warned["seq"] or 0
            after = app.wait_state(lambda s: s["state"] == SCORING and (s["seq"] or 0) > seq0 + 50,
                                   30, "scores after the disk filled")  # fmt: skip
            code = app.stop()
            store, sid = app.session()
            info = store.get(sid)
            rows = sum(1 for _ in store.frames(sid))
            decoded = sum(1 for _ in iter_frames(store.video_path(sid)))
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
    return {"drill": "disk-full", "notice_after_s": round(t_warned, 2), "notice": warned["notice"],
            "live_state_after": after["state"], "session_status": info.status,
            "journal_frames": rows, "video_frames": decoded, "exit_code": code}  # fmt: skip


def drill_bad_messages(workdir: Path, n: int = 2000) -> dict[str, Any]:
    """Another local process pushes malformed messages into the socket that accepts them.

    Of the run's bound sockets only the supervisor's ``control`` (heartbeats)
    takes incoming messages; the others are bound by senders (frames,
    results, status publishers; the capture's ``record`` pusher). Malformed
    frames and results on the receiving side are covered by
    tests/test_transport.py and tests/pipeline/test_pipeline_messages.py.
    """
    import zmq

    with running(workdir) as app:
        app.wait_scoring()
        base = Path(os.environ.get("XDG_RUNTIME_DIR") or "/tmp")
        sock_dir = base / f"pivh-live-{os.getuid()}"
        if not sock_dir.is_dir():
            sock_dir = Path("/tmp") / f"pivh-live-{os.getuid()}"
        run_id = f"p{app.proc.pid}"
        paths = {"control": sock_dir / f"{run_id}-control.sock"}
        for path in paths.values():
            _wait(path.exists, 10, f"the socket {path}")
        ctx = zmq.Context.instance()
        junk = [[b"\x00"], [b"not json", b"x" * 100], [b'{"kind":"region","v":1}', b""],
                [b'{"kind":"heartbeat","v":1,"stage":"capture","info":[1]}'],
                [b'{"kind":"region","v":1,"seq":1,"shape":[1000000,1000000]}', b"x" * 10],
                [os.urandom(64), os.urandom(4096)]]  # fmt: skip
        for path in paths.values():
            push = ctx.socket(zmq.PUSH)
            push.setsockopt(zmq.SNDTIMEO, 5000)  # never hang the drill
            push.connect(f"ipc://{path}")
            for i in range(n):
                push.send_multipart(junk[i % len(junk)])
            push.close(linger=2000)
        seq0 = (app.state() or {}).get("seq") or 0
        app.wait_state(lambda s: s["state"] == SCORING and (s["seq"] or 0) > seq0 + 50, 30,
                       "scores after the junk")  # fmt: skip
        stages = children(app.proc.pid)
        code = app.stop()
        store, sid = app.session()
        info = store.get(sid)
        text = app.log_text()
    return {"drill": "bad-messages", "sent_per_socket": n, "sockets": sorted(paths),
            "stages_alive_after": sorted(stages), "restarts": "restarting" in text,
            "warnings_logged": text.count("bad") , "session_status": info.status,
            "exit_code": code}  # fmt: skip


DRILLS: dict[str, Callable[[Path], dict[str, Any]]] = {
    "kill-inference": lambda d: drill_kill_stage(d, "inference"),
    "kill-capture": lambda d: drill_kill_stage(d, "capture"),
    "kill-app": drill_kill_app,
    "stall": drill_stall,
    "resize": drill_resize,
    "disk-full": drill_disk_full,
    "bad-messages": drill_bad_messages,
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("drills", nargs="*", choices=[*DRILLS, []], help="default: all")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    names = args.drills or list(DRILLS)
    results = []
    for name in names:
        with tempfile.TemporaryDirectory(prefix=f"drill-{name}-") as tmp:
            try:
                out = DRILLS[name](Path(tmp))
            except DrillError as exc:
                out = {"drill": name, "not_done": str(exc)}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()
        results.append(out)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
