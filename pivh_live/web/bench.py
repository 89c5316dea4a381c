"""What the live page costs the pipeline: `LiveDisplay.on_result` time at 60 fps with 0-N clients.

    python -m pivh_live.web.bench [--fps 60] [--seconds 10] [--clients 0 1 3] [--size 1024x768]

Publishes phantom regions (alert state, lesion contour) at a fixed rate
through `LiveDisplay` into a `FrameHub` served by the real web server, while
N client processes (separate processes, like browsers) stream the MJPEG
page. Each ``on_result`` call is timed with ``perf_counter_ns``; the report
gives its median, p99 and max per client count, the JPEG encodes done and
the frames each client received. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
from typing import Any

import numpy as np


def _client(url: str, stop: Any, counts: Any, index: int) -> None:
    """A browser stand-in: reads the MJPEG stream as fast as it comes and counts parts."""
    import httpx

    with (
        httpx.Client(base_url=url, timeout=30) as client,
        client.stream("GET", "/live/stream.mjpg") as response,
    ):
        for chunk in response.iter_bytes():
            counts[index] += chunk.count(b"--pivhframe\r\n")
            if stop.is_set():
                return


def _regions(size: tuple[int, int], n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    import cv2

    from pivh_live.phantom import render_clip, sample_case

    clip = render_clip(sample_case(np.random.default_rng(seed), grade=3, n_frames=n))
    frames = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in clip.frames])
    masks = np.stack([cv2.resize(m.astype(np.uint8), size) for m in clip.masks])
    return frames, masks


def _wait_for_clients(app: Any, clients: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while clients and time.monotonic() < deadline:
        waker = getattr(app.state, "waker", None)
        if waker is not None and waker.clients >= clients:
            return
        time.sleep(0.01)
    if clients:
        raise RuntimeError(f"{clients} stream clients did not connect in {timeout_s} s")


def run(fps: float, seconds: float, clients: int, size: tuple[int, int], max_fps: float) -> dict:
    import cv2

    from pivh_live.frames import Roi, Score
    from pivh_live.pipeline.results import FrameResult, RegionFrame
    from pivh_live.preprocess import preprocess
    from pivh_live.smoothing import TemporalSmoother
    from pivh_live.web import FrameHub, LiveDisplay
    from pivh_live.web.app import create_app
    from pivh_live.web.server import WebServer

    frames, masks = _regions(size, 8, seed=3)
    heat = [cv2.resize(preprocess(m * 255)[0], (32, 32)).astype(np.float32) for m in masks]
    probs = np.array([0.02, 0.03, 0.10, 0.80, 0.05])
    hub = FrameHub(engine="bench", model_version="0")
    display = LiveDisplay(hub)
    smoother = TemporalSmoother()
    app = create_app(hub=hub, max_fps=max_fps)
    server = WebServer(app, "127.0.0.1", 0).start()
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    counts = ctx.Array("l", clients)
    procs = [
        ctx.Process(target=_client, args=(server.url, stop, counts, i)) for i in range(clients)
    ]
    for p in procs:
        p.start()
    n = round(fps * seconds)
    period = 1e9 / fps
    times = np.empty(n, dtype=np.int64)
    try:
        _wait_for_clients(app, clients, timeout_s=60.0)
        start = time.monotonic_ns()
        for i in range(n):
            due = start + round(i * period)
            while (now := time.monotonic_ns()) < due:
                time.sleep(min(0.001, (due - now) / 1e9))
            k = i % len(frames)
            score = Score(probs, 0.99, heat[k])
            state = smoother.update(now, score, 5.0, i)
            roi = Roi(0, 0, *size)
            region = RegionFrame(i, now, i / fps, frames[k], roi, {"capture": now})
            result = FrameResult(i, now, i / fps, score, state, 5.0, roi, {"capture": now})
            t0 = time.perf_counter_ns()
            display.on_result(region, result)
            times[i] = time.perf_counter_ns() - t0
    finally:
        stop.set()
        server.stop()
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
    us = times / 1e3
    return {
        "clients": clients,
        "frames": n,
        "on_result_us": {
            "median": round(float(np.median(us)), 1),
            "p99": round(float(np.percentile(us, 99)), 1),
            "max": round(float(us.max()), 1),
        },
        "jpeg_encodes": hub.encoded,
        "frames_per_client": list(counts),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fps", type=float, default=60.0)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--clients", type=int, nargs="+", default=[0, 1, 3])
    p.add_argument("--size", default="1024x768", help="region WxH (default 1024x768)")
    p.add_argument("--max-fps", type=float, default=30.0, help="stream rate cap (default 30)")
    args = p.parse_args(argv)
    w, h = (int(v) for v in args.size.lower().split("x"))
    results = [run(args.fps, args.seconds, c, (w, h), args.max_fps) for c in args.clients]
    summary = {"fps": args.fps, "seconds": args.seconds, "size": [w, h], "max_fps": args.max_fps,
               "runs": results}  # fmt: skip
    print(json.dumps(summary, indent=1))  # noqa: T201  (a command-line tool's output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
