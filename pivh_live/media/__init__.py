"""Decoding and encoding of recorded media: video files, image folders, DICOM.

Reading returns grayscale uint8 frames (ultrasound B-mode is gray; colour
inputs are converted with the ITU-R BT.601 luma weights). Decoding streams:
``iter_frames`` holds one frame at a time, so long clips and live replays do
not load the whole file. The rules per input are in docs/dataset.md.

A file that stops decoding part-way (truncated recording, disk full during
capture) yields the frames decoded so far and logs a warning instead of
failing: those frames are good and the clip is usually still useful. A file
that yields no frame at all raises ``MediaError``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from pivh_live.errors import MediaError
from pivh_live.media.common import (
    DEFAULT_FPS,
    DICOM_EXTENSIONS,
    FPS_FILE,
    IMAGE_EXTENSIONS,
    MediaFrame,
    MediaInfo,
    MediaKind,
    rgb_to_gray,
)
from pivh_live.media.dicom import _iter_dicom, _probe_dicom
from pivh_live.media.encode import write_video
from pivh_live.media.images import _iter_images, _probe_images
from pivh_live.media.video import _iter_video, _probe_video

__all__ = [
    "DEFAULT_FPS",
    "DICOM_EXTENSIONS",
    "FPS_FILE",
    "IMAGE_EXTENSIONS",
    "MediaFrame",
    "MediaInfo",
    "MediaKind",
    "iter_frames",
    "media_kind",
    "probe_media",
    "read_frames",
    "rgb_to_gray",
    "write_video",
]


def media_kind(path: str | Path) -> MediaKind:
    """A directory is an image folder; ``.dcm`` or a DICM preamble is DICOM; else video."""
    path = Path(path)
    if path.is_dir():
        return "images"
    if not path.exists():
        raise MediaError(f"{path} does not exist; check the path")
    if path.suffix.lower() in DICOM_EXTENSIONS:
        return "dicom"
    try:
        with path.open("rb") as fh:
            head = fh.read(132)
    except OSError as exc:
        raise MediaError(f"cannot read {path}: {exc.strerror}; check its permissions") from exc
    return "dicom" if head[128:132] == b"DICM" else "video"


def probe_media(path: str | Path) -> MediaInfo:
    """Frame count, rate and size of a video, image folder or DICOM file."""
    path = Path(path)
    kind = media_kind(path)
    if kind == "images":
        return _probe_images(path)
    if kind == "dicom":
        return _probe_dicom(path)
    return _probe_video(path)


def iter_frames(path: str | Path, *, max_frames: int | None = None) -> Iterator[MediaFrame]:
    """Decode ``path`` frame by frame to gray uint8 (H, W) images.

    A missing path raises ``MediaError`` at once; corrupt or unsupported
    content raises it from the first ``next``.
    """
    if max_frames is not None and max_frames < 0:
        raise ValueError(f"max_frames must be >= 0, got {max_frames}")
    path = Path(path)
    kind = media_kind(path)
    if kind == "images":
        return _iter_images(path, max_frames)
    if kind == "dicom":
        return _iter_dicom(path, max_frames)
    return _iter_video(str(path), str(path), max_frames)


def read_frames(path: str | Path, max_frames: int | None = None) -> tuple[np.ndarray, float]:
    """All frames of ``path`` as one (T, H, W) uint8 array, plus frames per second."""
    info = probe_media(path)
    if max_frames == 0:
        return np.zeros((0, info.height, info.width), np.uint8), info.fps or DEFAULT_FPS
    frames = list(iter_frames(path, max_frames=max_frames))
    if not frames:
        raise MediaError(f"no frames decoded from {path}; check that the file is not empty")
    shape = frames[0].image.shape
    for f in frames:
        if f.image.shape != shape:
            raise MediaError(
                f"{path}: frame {f.index} is {f.image.shape[1]}x{f.image.shape[0]} but frame 0 "
                f"is {shape[1]}x{shape[0]}; re-encode it at one frame size"
            )
    fps = info.fps or _fps_from_times([f.t for f in frames])
    return np.stack([f.image for f in frames]), fps


def _fps_from_times(times: list[float]) -> float:
    diffs = np.diff(np.asarray(times))
    diffs = diffs[diffs > 0]
    return float(1.0 / np.median(diffs)) if diffs.size else DEFAULT_FPS
