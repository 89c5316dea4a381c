"""A short phantom scanner-screen clip rendered once, cached, and replayed as a live source.

The phantom renderer takes ~25 ms per 1080p frame on this CPU, too slow to be
paced at 60 fps, so the benchmark renders a short clip once (cached as .npy
under the cache directory, memory-mapped so several instances share one
copy in the page cache) and loops it. `LoopedClipSource` behaves as a capture
card does: each frame is "captured" at its due time on the wall clock, the
reader gets the newest captured frame, frames it was too slow for are
dropped and counted, and the capture stamp is the due time (the moment the
frame arrived, not the moment the loop got round to reading it), so a slow
loop shows up as latency and drops rather than being hidden.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pivh_live.errors import ConfigError
from pivh_live.frames import Frame, Roi
from pivh_live.sources.base import Clock, Sleep, Source

log = logging.getLogger(__name__)

CLIP_FORMAT = 1


@dataclass(frozen=True)
class ScreenClip:
    """``frames`` uint8 (T, H, W), the true image ``roi`` and the clip's description."""

    frames: np.ndarray
    roi: Roi
    seed: int
    grade: int

    @property
    def resolution(self) -> tuple[int, int]:
        return int(self.frames.shape[2]), int(self.frames.shape[1])


def parse_resolution(text: str) -> tuple[int, int]:
    """``"1920x1080"`` -> (1920, 1080)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"bad resolution {text!r}; write WIDTHxHEIGHT, e.g. 1920x1080") from None
    if not (64 <= w <= 8192 and 64 <= h <= 8192):
        raise ConfigError(f"resolution {text!r} must be between 64x64 and 8192x8192")
    return w, h


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pivh-live" / "bench"


def render_screen_clip(
    width: int, height: int, n_frames: int = 60, seed: int = 0, grade: int = 3
) -> ScreenClip:
    """Render ``n_frames`` of a phantom scanner screen at ``width`` x ``height``.

    The screen layout is forced to 1920x1080 (or 1280x720 for small sizes)
    and the frames resized if another size is asked for; freezes, probe
    lifts and blank starts are turned off so every frame shows a moving image.
    """
    import cv2

    from pivh_live.phantom import ClipRenderer, sample_case

    spec = sample_case(
        np.random.default_rng(seed), "balanced", n_frames=n_frames, fps=30.0, screen=True,
        grade=grade, case_id=f"bench{seed:05d}",
    )  # fmt: skip
    base = (1920, 1080) if height > 720 else (1280, 720)
    assert spec.style.screen is not None
    layout = dataclasses.replace(spec.style.screen, width=base[0], height=base[1])
    style = dataclasses.replace(
        spec.style, screen=layout, p_freeze=0.0, p_lift=0.0, p_off_start=0.0, p_off_end=0.0
    )
    renderer = ClipRenderer(dataclasses.replace(spec, style=style))
    frames = np.empty((n_frames, height, width), dtype=np.uint8)
    for i, rendered in enumerate(renderer.frames()):
        image = rendered.image
        if image.shape != (height, width):
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        frames[i] = image
    r = renderer.roi
    sx, sy = width / base[0], height / base[1]
    roi = Roi(round(r.x * sx), round(r.y * sy), round(r.w * sx), round(r.h * sy))
    return ScreenClip(frames, roi, seed, grade)


def cached_screen_clip(
    width: int,
    height: int,
    n_frames: int = 60,
    seed: int = 0,
    grade: int = 3,
    cache_dir: Path | None = None,
) -> ScreenClip:
    """`render_screen_clip`, rendered once and memory-mapped from ``cache_dir`` afterwards."""
    root = cache_dir or default_cache_dir()
    stem = f"screen-v{CLIP_FORMAT}-{width}x{height}-n{n_frames}-s{seed}-g{grade}"
    data, meta = root / f"{stem}.npy", root / f"{stem}.json"
    if data.is_file() and meta.is_file():
        try:
            frames = np.load(data, mmap_mode="r")
            roi = Roi(*json.loads(meta.read_text(encoding="utf-8"))["roi"])
            if frames.shape == (n_frames, height, width) and frames.dtype == np.uint8:
                return ScreenClip(frames, roi, seed, grade)
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("ignoring a damaged benchmark clip cache %s", data)
    t0 = time.monotonic()
    clip = render_screen_clip(width, height, n_frames, seed, grade)
    log.info("rendered a %dx%d phantom screen clip (%d frames) in %.1f s",
             width, height, n_frames, time.monotonic() - t0)  # fmt: skip
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / f"{stem}.{os.getpid()}.tmp.npy"
        np.save(tmp, clip.frames)
        tmp.replace(data)  # atomic: concurrent instances never read half a file
        roi = clip.roi
        meta.write_text(json.dumps({"roi": [roi.x, roi.y, roi.w, roi.h]}), encoding="utf-8")
        return ScreenClip(np.load(data, mmap_mode="r"), roi, seed, grade)
    except OSError as exc:
        log.warning("cannot cache the benchmark clip in %s (%s); keeping it in memory", root, exc)
        return clip


def write_image_folder(clip: ScreenClip, folder: Path, fps: float) -> Path:
    """The clip as uncompressed BMP files + fps.txt: a `file:` source any process can open.

    BMP decodes in about a millisecond, so the multi-process capture stage
    (which can only open sources by spec) replays the clip at 60 fps.
    """
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(clip.frames):
        path = folder / f"{i:05d}.bmp"
        if not path.is_file():
            tmp = folder / f".{i:05d}.{os.getpid()}.tmp"
            ok, buf = cv2.imencode(".bmp", np.asarray(frame))
            if not ok:
                raise ConfigError(f"cannot encode benchmark frame {i} as BMP")
            tmp.write_bytes(buf.tobytes())
            tmp.replace(path)  # atomic: a capture process never reads half a file
    fps_file, text = folder / "fps.txt", f"{fps:g}\n"
    if not fps_file.is_file() or fps_file.read_text(encoding="utf-8") != text:
        tmp = folder / f".fps.{os.getpid()}.tmp"
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(fps_file)
    return folder


class LoopedClipSource(Source):
    """Replays ``frames`` in a loop as a live capture at ``fps`` (0: as fast as read).

    Paced like a capture card: frame k is captured at ``t0 + k / fps``; a
    read returns the newest frame captured and not yet read (waiting for
    the next one if none), counting the frames skipped over in
    ``stats.dropped``; the frame's capture stamp is its due time.
    """

    kind = "bench-clip"

    def __init__(
        self,
        frames: np.ndarray,
        fps: float,
        *,
        spec: str = "bench-clip:",
        clock: Clock = time.monotonic_ns,
        sleep: Sleep = time.sleep,
    ) -> None:
        super().__init__(spec, clock=clock)
        if len(frames) == 0:
            raise ConfigError("the benchmark clip has no frames")
        if fps < 0:
            raise ConfigError(f"fps must be >= 0, got {fps}")
        self.frames = frames
        self.fps = float(fps)
        self._sleep = sleep
        self._t0: int | None = None
        self._next = 0  # index of the next frame to capture on the timeline

    def _open(self) -> None:
        # Fault the memory-mapped clip in before timing starts.
        for frame in self.frames:
            int(np.asarray(frame[::64, ::64]).sum())
        self._t0 = None
        self._next = 0

    def _read(self, timeout_s: float | None) -> Frame | None:
        if self.fps <= 0:
            index, t_ns = self._next, self._clock()
        else:
            index, t_ns = self._wait_due()
        self._next = index + 1
        image = self.frames[index % len(self.frames)]
        media_t = index / self.fps if self.fps > 0 else float(index)
        return self._stamp(image, media_t, t_ns)

    def _wait_due(self) -> tuple[int, int]:
        period = 1e9 / self.fps
        now = self._clock()
        if self._t0 is None:
            self._t0 = now
        newest = int((now - self._t0) // period)
        if newest < self._next:
            due = self._t0 + round(self._next * period)
            self._sleep(max(0, due - now) / 1e9)
            return self._next, due
        self.stats.dropped += newest - self._next
        return newest, self._t0 + round(newest * period)

    def _close(self) -> None:
        pass

    def _geometry(self) -> tuple[int, int, float]:
        return int(self.frames.shape[2]), int(self.frames.shape[1]), self.fps


def clip_info(clip: ScreenClip) -> dict[str, Any]:
    r = clip.roi
    w, h = clip.resolution
    return {
        "kind": "phantom screen clip (in memory, looped)",
        "resolution": f"{w}x{h}",
        "frames": int(clip.frames.shape[0]),
        "seed": clip.seed,
        "grade": clip.grade,
        "roi": [r.x, r.y, r.w, r.h],
    }
