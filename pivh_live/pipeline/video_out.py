"""Streaming H.264 encoder: one frame at a time, so a long clip never sits in memory.

`pivh_live.media.write_video` needs every frame at once; the overlay video of
`analyze` is written while the clip is analysed instead. Frames whose size
differs from the first (an auto-detected ROI that moved) are resized to it.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pivh_live.errors import MediaError

log = logging.getLogger(__name__)


class StreamingVideoWriter:
    """``write(bgr_or_gray_uint8)`` per frame, ``close()`` at the end (libx264, yuv420p)."""

    def __init__(
        self, path: str | Path, fps: float, *, codec: str = "libx264", crf: int = 20
    ) -> None:
        self.path = Path(path)
        self.fps = fps
        self.codec = codec
        self.crf = crf
        self.frames = 0
        self._container: Any = None
        self._stream: Any = None
        self._size: tuple[int, int] | None = None  # (w, h) of the first frame

    def write(self, image: np.ndarray) -> None:
        import av

        image = np.asarray(image)
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        if self._container is None:
            self._open(image.shape[1], image.shape[0])
        assert self._size is not None
        w, h = self._size
        if image.shape[1] != w or image.shape[0] != h:
            image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
        # yuv420p needs even sizes: pad by repeating the last row/column.
        pad_h, pad_w = self._stream.height - h, self._stream.width - w
        if pad_h or pad_w:
            image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        try:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise MediaError(
                f"cannot write video {self.path}: {exc}; check free disk space"
            ) from exc
        self.frames += 1

    def _open(self, w: int, h: int) -> None:
        import av

        self._size = (w, h)
        try:
            self._container = av.open(str(self.path), mode="w")
            stream = self._container.add_stream(
                self.codec, rate=Fraction(self.fps).limit_denominator(1001)
            )
            stream.width, stream.height = w + w % 2, h + h % 2
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(self.crf), "preset": "veryfast"}
            self._stream = stream
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise MediaError(f"cannot write video {self.path}: {exc}; check the path") from exc

    def close(self) -> None:
        if self._container is None:
            return
        import av

        try:
            for packet in self._stream.encode():
                self._container.mux(packet)
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise MediaError(f"cannot finish video {self.path}: {exc}") from exc
        finally:
            self._container.close()
            self._container = None
        log.info("wrote %s (%d frames)", self.path, self.frames)
