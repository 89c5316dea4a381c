"""Recorder throughput check: does recording keep up with capture, with zero dropped frames?

``python -m pivh_live.recording.bench [--frames 1200] [--fps 60] [--size 800x600]``

A capture stand-in process pushes phantom regions (gray, resized to
``--size``) at ``--fps`` on a ``record`` socket exactly as the capture stage
does (send timeout 0: a full queue is a counted drop, never a stall); this
process runs a `Recorder` attached to it, as `run_live` does, and feeds one
result per frame. Reported: frames pushed, frames dropped at capture, video
frames written, seq gaps, per-frame video write time and the recorder
process's CPU use. Temporary files only.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class RecordBench:
    frames: int
    fps: float
    size: tuple[int, int]
    capture_dropped: int
    video_frames: int
    journal_lines: int
    missed: int
    queue_dropped: int
    write_p50_ms: float | None
    write_p99_ms: float | None
    write_max_ms: float | None
    cpu_percent: float
    seconds: float
    mb_per_hour: float


def bench_frames(size: tuple[int, int], n: int = 30, seed: int = 0) -> np.ndarray:
    """``n`` phantom frames (gray uint8) resized to ``size`` = (w, h)."""
    import cv2

    from pivh_live.phantom import render_clip, sample_case

    spec = sample_case(np.random.default_rng(seed), n_frames=n, fps=30.0, grade=3)
    clip = render_clip(spec)
    return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_LINEAR) for f in clip.frames])


def _capture(address: str, frames: np.ndarray, n: int, fps: float, out: Any) -> None:
    """Capture stand-in: push ``n`` regions at ``fps`` like `run_capture`, report drops."""
    import threading

    from pivh_live.frames import Roi
    from pivh_live.pipeline.messages import region_to_message
    from pivh_live.pipeline.results import RegionFrame
    from pivh_live.transport import ReliablePusher, TransportError

    h, w = frames.shape[1:]
    roi = Roi(0, 0, w, h)
    pace = threading.Event()
    dropped = 0
    with ReliablePusher(address, name="capture", send_timeout_ms=0) as push:
        start = time.monotonic_ns()
        for i in range(n):
            t = start + round(i * 1e9 / fps)
            wait = (t - time.monotonic_ns()) / 1e9
            if wait > 0:
                pace.wait(wait)
            msg = region_to_message(RegionFrame(i, t, i / fps, frames[i % len(frames)], roi))
            for attempt in range(500 if i == 0 else 1):  # the first one waits for the recorder
                try:
                    push.send(msg)
                    break
                except TransportError:
                    if i == 0 and attempt < 499:
                        pace.wait(0.01)
                        continue
                    dropped += 1
        push.flush(5.0)
    out.send(dropped)


def bench_recorder(
    frames: int = 1200, fps: float = 60.0, size: tuple[int, int] = (800, 600)
) -> RecordBench:
    from pivh_live.pipeline.config import Endpoints
    from pivh_live.recording.recorder import Recorder
    from pivh_live.recording.store import SessionMeta, SessionStore
    from pivh_live.transport import endpoint

    images = bench_frames(size)
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="pivh-rec-bench-") as tmp:
        store = SessionStore(Path(tmp) / "data")
        address = endpoint(f"recbench{np.random.default_rng().integers(1 << 30)}")
        recorder = Recorder(SessionMeta("bench"), store, retention=None, min_free_bytes=0)
        recorder.attach(Endpoints(*(["inproc://unused"] * 2), address, *(["inproc://u"] * 2)))
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_capture, args=(address, images, frames, fps, child))
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        proc.start()
        _feed_results(recorder, frames, fps, proc)
        dropped = parent.recv()
        proc.join()
        recorder.close()
        seconds = time.monotonic() - t0
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        st, wt = recorder.status(), recorder.write_times()
        video_bytes = store.video_path(recorder.session_id).stat().st_size
        Path(address[len("ipc://") :]).unlink(missing_ok=True)
    return RecordBench(
        frames=frames, fps=fps, size=size, capture_dropped=dropped, video_frames=st.frames,
        journal_lines=st.results, missed=st.missed, queue_dropped=st.queue_dropped,
        write_p50_ms=wt.p50_ms, write_p99_ms=wt.p99_ms, write_max_ms=wt.max_ms,
        cpu_percent=100.0 * cpu / seconds, seconds=seconds,
        mb_per_hour=video_bytes / (frames / fps) * 3600 / 1e6,
    )  # fmt: skip


def _feed_results(recorder: Any, n: int, fps: float, proc: Any) -> None:
    """One result per frame at ``fps``, as the consumer host would hand them on."""
    import threading

    from pivh_live.frames import Score
    from pivh_live.pipeline.results import FrameResult
    from pivh_live.smoothing import TemporalSmoother

    smoother = TemporalSmoother()
    score = Score(np.array([0.9, 0.04, 0.03, 0.02, 0.01]), 0.99, np.zeros((4, 4), np.float32))
    pace = threading.Event()
    start = time.monotonic_ns()
    for i in range(n):
        t = start + round(i * 1e9 / fps)
        wait = (t - time.monotonic_ns()) / 1e9
        if wait > 0:
            pace.wait(wait)
        state = smoother.update(t, score, None, i)
        recorder.on_result(None, FrameResult(i, t, i / fps, score, state, None))
        if not proc.is_alive() and i > 0:
            break


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=1200)
    p.add_argument("--fps", type=float, default=60.0)
    p.add_argument("--size", default="800x600", help="WxH of the region")
    args = p.parse_args(argv)
    w, h = (int(v) for v in args.size.lower().split("x"))
    result = bench_recorder(args.frames, args.fps, (w, h))
    sys.stdout.write(json.dumps(asdict(result), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
