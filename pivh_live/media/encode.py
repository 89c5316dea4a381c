"""Video encoding with PyAV."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np

from pivh_live.errors import MediaError


def gray_to_yuv420p(gray: np.ndarray) -> np.ndarray:
    """Planar limited-range yuv420p (Y 16-235, neutral chroma) of an even-sized gray image.

    Done here rather than by FFmpeg's swscale, whose dithering state carries
    over from one video to the next within a process: the same seeded frames
    would otherwise encode differently depending on what was written before.
    """
    h, w = gray.shape
    y = (gray.astype(np.uint16) * 219 + 127) // 255 + 16
    out = np.full((h * 3 // 2, w), 128, dtype=np.uint8)
    out[:h] = y
    return out


def write_video(
    path: str | Path,
    frames: Sequence[np.ndarray] | np.ndarray,
    fps: float,
    *,
    codec: str = "libx264",
    crf: int = 18,
) -> Path:
    """Encode gray (H, W) or BGR (H, W, 3) uint8 frames to ``path`` with PyAV.

    ``libx264`` writes yuv420p (even width and height are padded by repeating
    the last row/column); ``ffv1`` writes lossless gray. Returns the path.
    """
    import av

    path = Path(path)
    if len(frames) == 0:
        raise MediaError(f"no frames to write to {path}")
    first = np.asarray(frames[0])
    h, w = first.shape[:2]
    gray = first.ndim == 2
    pad_h, pad_w = (h % 2, w % 2) if codec != "ffv1" else (0, 0)
    rate = Fraction(fps).limit_denominator(1001)
    try:
        with av.open(str(path), mode="w") as container:
            stream = container.add_stream(codec, rate=rate)
            stream.width, stream.height = w + pad_w, h + pad_h
            if codec == "ffv1":
                stream.pix_fmt = "gray" if gray else "bgr0"
            else:
                stream.pix_fmt = "yuv420p"
            if codec in ("libx264", "libx265"):
                stream.options = {"crf": str(crf), "preset": "veryfast"}
            yuv = gray and stream.pix_fmt == "yuv420p"
            src_fmt = "yuv420p" if yuv else ("gray" if gray else "bgr24")
            for image in frames:
                image = np.asarray(image)
                if pad_h or pad_w:
                    pad = ((0, pad_h), (0, pad_w)) + (((0, 0),) if image.ndim == 3 else ())
                    image = np.pad(image, pad, mode="edge")
                if yuv:
                    image = gray_to_yuv420p(image)
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format=src_fmt)
                for packet in stream.encode(vf):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    except (av.FFmpegError, OSError, ValueError) as exc:  # ValueError: codec/container mismatch
        raise MediaError(f"cannot write video {path}: {exc}") from exc
    return path
