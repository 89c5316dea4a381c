"""Types and constants shared by the media readers and writer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

MediaKind = Literal["video", "images", "dicom"]
DEFAULT_FPS = 25.0
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
DICOM_EXTENSIONS = frozenset({".dcm", ".dicom"})
FPS_FILE = "fps.txt"


@dataclass(frozen=True)
class MediaInfo:
    """What a media file holds, read from its headers without decoding pixels.

    ``n_frames`` and ``fps`` are None when the container does not say (some
    Matroska/WebM files); ``width``/``height`` are the decoded frame size.
    """

    kind: MediaKind
    n_frames: int | None
    fps: float | None
    width: int
    height: int


@dataclass(frozen=True, eq=False)
class MediaFrame:
    """One decoded frame: ``t`` is media time in seconds from the stream start."""

    index: int
    t: float
    image: np.ndarray


def rgb_to_gray(image: np.ndarray, *, bgr: bool = False) -> np.ndarray:
    """BT.601 luma of an 8-bit (H, W, 3+) RGB (or BGR) image, rounded to uint8."""
    c = image[..., :3].astype(np.uint32)
    r, g, b = (c[..., 2], c[..., 1], c[..., 0]) if bgr else (c[..., 0], c[..., 1], c[..., 2])
    # 0.299, 0.587, 0.114 in 16-bit fixed point; the weights sum to exactly 65536.
    return ((19595 * r + 38470 * g + 7471 * b + 32768) >> 16).astype(np.uint8)
