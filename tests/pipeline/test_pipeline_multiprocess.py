"""The multi-process pipeline over ipc: supervised capture + inference, results in this process.

Every wait is bounded and polls (results, heartbeats, /proc); nothing sleeps
to wait. Spawning the stage processes takes about a second each, so these
tests are marked slow.
"""

from __future__ import annotations

import itertools
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pipeline_fakes import grade_frames, make_tiny_bundle, write_clip

from pivh_live.pipeline import BaseConsumer, CallbackConsumer
from pivh_live.pipeline.config import Endpoints, LiveConfig
from pivh_live.pipeline.live import run_live
from pivh_live.pipeline.messages import region_from_message

pytestmark = pytest.mark.slow
_ids = itertools.count()
FAKE = "pipeline_fakes:make_fake_engine"
HOPS = [
    "capture", "crop", "capture.send", "infer.recv", "preprocess", "infer", "smooth",
    "result.send", "host.recv",
]  # fmt: skip


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # The lesion lasts 0.8 s: longer than the 0.51 s the smoother needs to alert.
    frames = grade_frames([0] * 20 + [3] * 80 + [0] * 20, seed=8)
    return write_clip(tmp_path_factory.mktemp("mp") / "loop.mkv", frames, fps=100.0)


def _config(clip: Path, **kw) -> LiveConfig:
    return LiveConfig(
        source=f"file:{clip}?loop=1",
        engine_factory=FAKE,
        auto_roi=False,
        run_id=f"t{os.getpid()}x{next(_ids)}",
        **kw,
    )


def test_results_arrive_with_every_hop_stamped(clip: Path) -> None:
    got = []
    consumer = CallbackConsumer(lambda region, result: got.append(result))
    config = _config(clip)
    report = run_live(config, [consumer], duration_s=60, stop=lambda: len(got) >= 300)
    assert report.results >= 300 and report.reason == "stopped" and report.restarts == 0
    seqs = [r.seq for r in got]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    for r in got[-50:]:
        assert list(r.stamps) == HOPS
        values = [r.stamps[h] for h in HOPS]
        assert values == sorted(values) and values[0] == r.t_capture_ns
    assert any(r.state.alert for r in got)
    sockets = Endpoints.for_run(config.run_id)
    assert not any(Path(a[len("ipc://") :]).exists() for a in (sockets.frames, sockets.control))


def test_a_slow_consumer_never_slows_capture(clip: Path) -> None:
    got = []
    ticks = []

    def slow(region, result) -> None:
        got.append(result)
        time.sleep(0.1)  # stands for a consumer that needs 100 ms per result (10/s << 100 fps)

    def on_tick(sup, host) -> None:
        info = sup.stage_info("capture")
        if info and info.get("frames"):
            ticks.append((time.monotonic(), info["frames"], host.stats))

    def enough() -> bool:
        return len(ticks) > 1 and ticks[-1][1] - ticks[0][1] >= 300

    consumer = CallbackConsumer(slow, needs_frames=True)
    run_live(_config(clip), [consumer], duration_s=60, stop=enough, on_tick=on_tick)
    (_, f0, _), (_, f1, stats) = ticks[0], ticks[-1]
    # Blocked by the consumer, capture would deliver about one frame per result;
    # decoupled, it runs ahead at its own pace and the consumer sees a fraction.
    assert len(got) < 0.6 * (f1 - f0)
    assert stats.dropped + stats.gaps > 0 and stats.results == len(got)


def test_killed_inference_is_restarted_and_results_resume(clip: Path) -> None:
    got, statuses, killed = [], [], {}
    consumer = CallbackConsumer(lambda region, result: got.append(result), statuses.append)

    def on_tick(sup, host) -> None:
        if not killed and len(got) >= 20:
            killed["pid"], killed["at"] = sup.pid("inference"), len(got)
            os.kill(killed["pid"], signal.SIGKILL)
        running = sup.stage_state("inference") == "running"
        if killed and "new_pid" not in killed and running and sup.pid("inference") != killed["pid"]:
            killed["new_pid"] = sup.pid("inference")
            killed["restarts"] = sup.restarts("inference")

    def resumed() -> bool:
        return "new_pid" in killed and len(got) >= killed["at"] + 30

    report = run_live(_config(clip), [consumer], duration_s=60, stop=resumed, on_tick=on_tick)
    assert resumed(), f"results did not resume: {killed}, {len(got)} results"
    assert killed["restarts"] == 1 and report.restarts == 1
    assert "restarting" in [s.display_status for s in statuses]
    assert dict(statuses[-1].stages)["inference"] == "running"


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


RUNNER = """
import argparse, sys
from pivh_live.cli import configure_logging
from pivh_live.commands import run
p = argparse.ArgumentParser()
run.configure(p)
configure_logging(0, False)
sys.exit(run.main(p.parse_args(sys.argv[1:])))
"""


def _start_runner(clip: Path, tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    """Start `pivh-live run --headless` and return once it logs results flowing."""
    bundle = make_tiny_bundle(tmp_path / "bundle")
    session = tmp_path / "session"
    args = ["--source", f"file:{clip}?loop=1", "--model", str(bundle), "--headless",
            "--session-dir", str(session), "--roi", "0,0,48,48", "--no-record",
            "--status-every", "0.5"]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-c", RUNNER, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    seen = b""
    while b" fps | latency p50 " not in seen.replace(b"-- fps", b""):
        remaining = deadline - time.monotonic()
        assert remaining > 0 and proc.poll() is None, seen.decode(errors="replace")
        ready, _, _ = select.select([proc.stderr], [], [], remaining)
        if ready:
            seen += os.read(proc.stderr.fileno(), 65536)
    return proc, session / "frames.jsonl"


def _wait_gone(pids: list[int], timeout_s: float) -> list[int]:
    """Wait (on pidfds: woken by each exit, no polling) until ``pids`` exit; the ones left."""
    fds = {}
    for pid in pids:
        try:
            fds[os.pidfd_open(pid)] = pid
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + timeout_s
    try:
        while fds:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            ready, _, _ = select.select(list(fds), [], [], remaining)
            for fd in ready:
                os.close(fd)
                del fds[fd]
        return [pid for pid in fds.values() if _alive(pid)]
    finally:
        for fd in fds:
            os.close(fd)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_terminate_stops_everything(clip: Path, tmp_path: Path, sig: int) -> None:
    proc, frames = _start_runner(clip, tmp_path)
    children = _children(proc.pid)
    assert len(children) >= 2  # capture and inference
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert b"stopped (stopped)" in err
    # The stages were joined before the runner exited; multiprocessing's resource
    # tracker (also a child) exits once the runner's end of its pipe closes.
    left = _wait_gone(children, 5)
    assert left == [], [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in left]
    lines = frames.read_text().splitlines()
    assert lines and all(line.startswith('{"frame":') for line in lines)


def test_stages_exit_when_their_supervisor_is_killed(clip: Path, tmp_path: Path) -> None:
    proc, _ = _start_runner(clip, tmp_path)
    children = _children(proc.pid)
    assert len(children) >= 2
    proc.kill()
    proc.communicate(timeout=10)
    assert _wait_gone(children, 15) == [], "stage processes outlived their supervisor"


class RecorderProbe(BaseConsumer):
    """A recorder stand-in: pulls every frame from ``record`` (attached by run_live)."""

    needs_record = True

    def __init__(self) -> None:
        self.seqs: list[int] = []
        self.puller = None

    def attach(self, endpoints) -> None:
        from pivh_live.transport import ReliablePuller

        self.puller = ReliablePuller(endpoints.record, name="recorder")

    def _drain(self, timeout_ms: int) -> None:
        while (msg := self.puller.recv(timeout_ms)) is not None:
            self.seqs.append(region_from_message(msg).seq)

    def on_result(self, region, result) -> None:
        self._drain(0)

    def close(self) -> None:
        self._drain(200)
        self.puller.close()


def test_recorder_gets_every_frame_after_it_connects(tmp_path: Path) -> None:
    frames = grade_frames([0] * 120, seed=9)
    clip = write_clip(tmp_path / "once.mkv", frames, fps=100.0)
    probe, last_info = RecorderProbe(), {}

    def on_tick(sup, host) -> None:
        last_info.update(sup.stage_info("capture") or {})

    config = LiveConfig(
        source=str(clip), engine_factory=FAKE, auto_roi=False, record=True,
        run_id=f"t{os.getpid()}x{next(_ids)}", drain_s=0.5,
    )  # fmt: skip
    report = run_live(config, [probe], duration_s=60, on_tick=on_tick)
    assert report.reason == "source ended"
    # Real-time pacing drops frames the capture loop is too late for (as a live feed
    # would) when the machine is busy, so count what was sent: seqs run 0..sent-1.
    sent = last_info["sent"]
    assert last_info["source_state"] == "ended" and 60 < sent <= 120
    # Frames sent before the recorder's connection completed were counted as dropped;
    # from then on it got every one, in order.
    assert probe.seqs == list(range(sent - len(probe.seqs), sent))
    assert len(probe.seqs) + last_info["record_dropped"] == sent
    assert len(probe.seqs) > 60
