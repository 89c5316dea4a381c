"""Single frames of a recorded video by time, for browsers that cannot play its codec.

The review player uses the browser's ``<video>`` when it can play the
session's video (H.264 MP4 in Chromium and Firefox); otherwise it shows the
JPEG of the frame at the player's time from ``/api/sessions/<id>/frame.jpg``,
decoded here. Playing forward decodes each frame once (the container stays
open); a jump back or far ahead seeks to the keyframe before the target.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pivh_live.errors import MediaError

_SEEK_AHEAD_S = 2.0  # farther than this ahead, seeking beats decoding forward
_EPS = 1e-4


@dataclass(frozen=True, eq=False)
class DecodedFrame:
    t: float  # video seconds
    image: np.ndarray  # gray uint8 (H, W)


class VideoFrames:
    """``frame_at(t_s)``: the last frame shown at or before ``t_s`` (the first one before it)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._container: Any = None
        self._stream: Any = None
        self._frames: Iterator[DecodedFrame] | None = None
        self._current: DecodedFrame | None = None
        self._peek: DecodedFrame | None = None
        self.seeks = 0

    def frame_at(self, t_s: float) -> DecodedFrame:
        with self._lock:
            cur = self._current
            if cur is None or t_s < cur.t - _EPS or t_s - cur.t > _SEEK_AHEAD_S:
                self._seek(t_s)
            while True:
                nxt = self._peek if self._peek is not None else self._next()
                self._peek = None
                if nxt is None:
                    break
                if self._current is None or nxt.t <= t_s + _EPS:
                    self._current = nxt
                    continue
                self._peek = nxt
                break
            if self._current is None:
                raise MediaError(f"{self.path.name} has no decodable frame")
            return self._current

    def _next(self) -> DecodedFrame | None:
        assert self._frames is not None
        try:
            return next(self._frames)
        except StopIteration:
            return None

    def _seek(self, t_s: float) -> None:
        import av

        try:
            if self._container is None:
                self._container = av.open(str(self.path))
                self._stream = self._container.streams.video[0]
                self._stream.thread_type = "AUTO"
            stream = self._stream
            base = float(stream.time_base)
            start = stream.start_time or 0
            self._container.seek(start + max(0, int(t_s / base)), stream=stream, backward=True)
        except (av.FFmpegError, OSError) as exc:
            self.close()
            raise MediaError(f"cannot read {self.path.name}: {exc}") from None
        self.seeks += 1
        self._current = self._peek = None
        self._frames = self._decode(start, base)

    def _decode(self, start: int, base: float) -> Iterator[DecodedFrame]:
        import av

        try:
            for frame in self._container.decode(self._stream):
                if frame.pts is None:
                    continue
                gray = frame.to_ndarray(format="gray")
                yield DecodedFrame(max(0.0, (frame.pts - start) * base), np.ascontiguousarray(gray))
        except av.FFmpegError:
            return  # a cut recording: what decoded is still shown

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
        self._container = self._stream = self._frames = None
        self._current = self._peek = None


class VideoFramesCache:
    """A few open `VideoFrames`, least recently used closed first."""

    def __init__(self, size: int = 2) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._open: OrderedDict[Path, VideoFrames] = OrderedDict()

    def get(self, path: Path) -> VideoFrames:
        with self._lock:
            reader = self._open.get(path)
            if reader is None:
                reader = self._open[path] = VideoFrames(path)
                while len(self._open) > self.size:
                    _, old = self._open.popitem(last=False)
                    with old._lock:
                        old.close()
            self._open.move_to_end(path)
            return reader

    def drop(self, path: Path) -> None:
        with self._lock:
            reader = self._open.pop(path, None)
        if reader is not None:
            with reader._lock:
                reader.close()
