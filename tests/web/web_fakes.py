"""Test helpers for the web tests: phantom regions, a scripted sweep through the real smoother,
a recorded session written through the real `SessionStore`, and a headless Chromium finder.

Scores come from a fixed table per labelled grade (the "fake engine"); the
alert, grade and status come from `TemporalSmoother`, so the banner the page
shows is the one the live pipeline would show for that sweep.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pivh_live.frames import Roi, Score
from pivh_live.pipeline.results import FrameResult, RegionFrame
from pivh_live.preprocess import preprocess
from pivh_live.smoothing import SmoothingConfig, TemporalSmoother

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

# Per-frame model output for a frame whose visible grade is the key.
PROBS = {
    0: (0.96, 0.02, 0.01, 0.005, 0.005),
    3: (0.02, 0.03, 0.10, 0.80, 0.05),
}


@dataclass(frozen=True)
class PhantomClip:
    frames: np.ndarray  # (T, H, W) uint8
    masks: np.ndarray  # (T, H, W) bool
    grade: int


REGION_SIZE = (560, 360)  # (w, h): one sweep keeps one image region size


def phantom_clip(grade: int, n_frames: int, seed: int) -> PhantomClip:
    """A rendered phantom clip scaled to `REGION_SIZE` (views differ in size)."""
    import cv2

    from pivh_live.phantom import render_clip, sample_case

    spec = sample_case(np.random.default_rng(seed), grade=grade, n_frames=n_frames)
    clip = render_clip(spec)
    frames = np.stack(
        [cv2.resize(f, REGION_SIZE, interpolation=cv2.INTER_AREA) for f in clip.frames]
    )
    masks = np.stack(
        [cv2.resize(m.astype(np.uint8), REGION_SIZE, interpolation=cv2.INTER_NEAREST) > 0
         for m in clip.masks]
    )  # fmt: skip
    return PhantomClip(frames, masks, grade)


def heatmap_of(mask: np.ndarray, size: int = 32) -> np.ndarray:
    """The lesion mask on the model's letterboxed grid, as a (size, size) map in [0, 1]."""
    import cv2

    boxed = preprocess(mask.astype(np.uint8) * 255)[0]
    return cv2.resize(boxed, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)


class Sweep:
    """Turns phantom frames into (region, result) pairs at ``fps`` through the real smoother."""

    def __init__(self, fps: float = 25.0, t0_ns: int = 10**12) -> None:
        self.fps = fps
        self.t0_ns = t0_ns
        self.seq = 0
        self.smoother = TemporalSmoother(SmoothingConfig())

    def step(
        self, image: np.ndarray, grade: int, mask: np.ndarray | None = None, t_ns: int | None = None
    ) -> tuple[RegionFrame, FrameResult]:
        """One frame; ``t_ns`` (default: ``fps`` after the previous one) is its capture stamp."""
        if t_ns is None:
            t_ns = self.t0_ns + round(self.seq * 1e9 / self.fps)
        heat = heatmap_of(mask) if mask is not None and mask.any() else np.zeros((32, 32), "f4")
        score = Score(np.asarray(PROBS[grade], np.float64), 0.99, heat)
        state = self.smoother.update(t_ns, score, 5.0, self.seq)
        h, w = image.shape[:2]
        roi = Roi(0, 0, w, h)
        stamps = {"capture": t_ns, "crop": t_ns + 1_000_000, "smooth": t_ns + 9_000_000}
        region = RegionFrame(self.seq, t_ns, self.seq / self.fps, image, roi, stamps)
        result = FrameResult(self.seq, t_ns, self.seq / self.fps, score, state, 5.0, roi, stamps)
        self.seq += 1
        return region, result

    def play(self, clip: PhantomClip, n: int) -> Iterator[tuple[RegionFrame, FrameResult]]:
        for i in range(n):
            k = i % len(clip.frames)
            yield self.step(clip.frames[k], clip.grade, clip.masks[k])


def chromium_or_skip() -> Path:
    import pytest

    if not CHROMIUM.exists() or shutil.which(str(CHROMIUM)) is None:
        pytest.skip(f"{CHROMIUM} is not installed (CI installs Debian's chromium)")
    pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed")
    return CHROMIUM


def record_session(root: Path, sweeps: list[tuple[PhantomClip, int]], fps: float = 25.0) -> str:
    """Plays the clips (each for n frames) through the real `Recorder`; the new session's id."""
    from pivh_live.recording import SessionMeta, SessionStore
    from pivh_live.recording.recorder import Recorder

    store = SessionStore(root)
    meta = SessionMeta(source_kind="phantom", model_name="fake", model_version="0.0.0",
                       model_sha256="0" * 64, engine="fake", fps=fps)  # fmt: skip
    recorder = Recorder(meta, store, retention=None, min_free_bytes=0)
    sweep = Sweep(fps=fps)
    for clip, n in sweeps:
        for region, result in sweep.play(clip, n):
            recorder.on_result(region, result)
    recorder.close()
    return recorder.session_id


def mjpeg_parts(chunks: Iterator[bytes]) -> Iterator[tuple[dict[str, str], bytes]]:
    """(headers, body) of each part of a multipart/x-mixed-replace stream."""
    buf = b""
    for chunk in chunks:
        buf += chunk
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buf[:end].decode("latin-1").split("\r\n")
            headers = {
                k.strip().lower(): v.strip()
                for k, _, v in (line.partition(":") for line in head if ":" in line)
            }
            length = int(headers["content-length"])
            if len(buf) < end + 4 + length:
                break
            yield headers, buf[end + 4 : end + 4 + length]
            buf = buf[end + 4 + length :].lstrip(b"\r\n")
