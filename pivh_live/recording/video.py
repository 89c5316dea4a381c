"""Crash-safe region video: H.264 in fragmented MP4, written one frame at a time.

Why this format (docs/recording.md): x264 ``ultrafast`` keeps up with 60 fps
regions on one small CPU core, the file is an order of magnitude smaller
than lossless FFV1 on speckle, and browsers play it without a transcode.

Crash safety: the MP4 has an empty ``moov`` and one ``moof``+``mdat``
fragment per ``frag_s`` (0.5 s) of video, each written to the OS as soon
as it is complete (``flush_packets``); the encoder runs without look-ahead
or B-frames (``tune=zerolatency``). A process killed with SIGKILL therefore
leaves a file that decodes up to at most about ``frag_s`` before the kill.
A keyframe (IDR) is forced every ``keyframe_s`` (1 s) so a player can seek
to any second.

Timing: frame ``pts`` is the capture stamp minus the session's time origin,
in milliseconds, so video time = journal ``(t_capture_ns - t0_capture_ns)``
and gaps (no signal) stay gaps. Gray regions are stored as full-range
yuv420p (luma = the gray value, neutral chroma, ``color_range`` tagged),
so gray values survive without range compression; BGR regions are
converted by FFmpeg.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from pivh_live.recording.files import create_private_file, private_umask

log = logging.getLogger(__name__)

TIME_BASE = Fraction(1, 1000)
_RANGE_JPEG = 2  # AVCOL_RANGE_JPEG: full-range luma


class RegionVideoWriter:
    """``write(image, t_ns)`` per captured region, ``close()`` at the end.

    ``image`` is gray (H, W) or BGR (H, W, 3) uint8. The first frame fixes
    the video size (odd sizes padded by one edge row/column); a later frame
    of another size (the ROI changed) is letterboxed into it and counted in
    ``resized``. Write errors (``OSError`` for a full disk, ``av.FFmpegError``)
    propagate: the caller decides to stop.
    """

    def __init__(
        self,
        path: Path,
        *,
        crf: int = 18,
        preset: str = "ultrafast",
        keyframe_s: float = 1.0,
        frag_s: float = 0.5,
        threads: int = 1,
    ) -> None:
        self.path = Path(path)
        self.crf = crf
        self.preset = preset
        self.keyframe_ns = round(keyframe_s * 1e9)
        self.frag_s = frag_s
        self.threads = threads
        self.frames = 0
        self.resized = 0
        self.size: tuple[int, int] | None = None  # (w, h) of the region, before padding
        self.color = False
        self._container: Any = None
        self._stream: Any = None
        self._t0: int | None = None
        self._last_pts = -1
        self._last_key: int | None = None
        self._buf: np.ndarray | None = None

    def write(self, image: np.ndarray, t_ns: int, t0_ns: int | None = None) -> None:
        """Encode one region captured at ``t_ns`` (video time 0 = ``t0_ns``, else the first)."""
        if self._container is None:
            self._open(image, t_ns if t0_ns is None else t0_ns)
        image = self._fit(image)
        assert self._t0 is not None
        pts = max(self._last_pts + 1, round((int(t_ns) - self._t0) / 1e6))
        frame = self._frame(image)
        frame.pts = pts
        if self._last_key is None or t_ns - self._last_key >= self.keyframe_ns:
            import av

            frame.pict_type = av.video.frame.PictureType.I
            self._last_key = int(t_ns)
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self._last_pts = pts
        self.frames += 1

    def _open(self, image: np.ndarray, t0_ns: int) -> None:
        import av

        h, w = image.shape[:2]
        self.size = (w, h)
        self.color = image.ndim == 3
        self._t0 = int(t0_ns)
        create_private_file(self.path)  # FFmpeg keeps the mode of the file it truncates
        options = {
            "movflags": "frag_keyframe+empty_moov+default_base_moof",
            "frag_duration": str(round(self.frag_s * 1e6)),
            "flush_packets": "1",
        }
        with private_umask():
            container = av.open(str(self.path), mode="w", format="mp4", options=options)
        try:
            stream = container.add_stream("libx264", rate=30)
            stream.width, stream.height = w + w % 2, h + h % 2
            stream.pix_fmt = "yuv420p"
            stream.time_base = TIME_BASE
            stream.codec_context.time_base = TIME_BASE
            stream.thread_count = self.threads
            stream.options = {
                "preset": self.preset,
                "crf": str(self.crf),
                "tune": "zerolatency",
                "forced-idr": "1",
                # Keyframes come from our 1-second forcing; x264's own only as a fallback.
                "g": "600",
            }
            if not self.color:
                stream.codec_context.color_range = _RANGE_JPEG
        except BaseException:
            container.close()
            raise
        self._container, self._stream = container, stream
        log.debug("video %s: %dx%d, crf %d, %s", self.path, w, h, self.crf, self.preset)

    def _fit(self, image: np.ndarray) -> np.ndarray:
        assert self.size is not None
        w, h = self.size
        if image.shape[0] == h and image.shape[1] == w and (image.ndim == 3) == self.color:
            return image
        import cv2

        if image.ndim == 3 and not self.color:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        elif image.ndim == 2 and self.color:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        if self.resized == 0 and (image.shape[0] != h or image.shape[1] != w):
            log.warning(
                "the image region changed size from %dx%d to %dx%d; letterboxing it into "
                "the session's video", w, h, image.shape[1], image.shape[0],
            )  # fmt: skip
        self.resized += int(image.shape[0] != h or image.shape[1] != w)
        return _letterbox(image, w, h)

    def _frame(self, image: np.ndarray) -> Any:
        import av

        w, h = self._stream.width, self._stream.height
        if self.color:
            if image.shape[1] != w or image.shape[0] != h:
                image = np.pad(image, ((0, h - image.shape[0]), (0, w - image.shape[1]), (0, 0)),
                               mode="edge")  # fmt: skip
            return av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
        # Full-range 4:2:0 built by hand: luma is the gray image, chroma neutral.
        if self._buf is None:
            self._buf = np.full((h * 3 // 2, w), 128, dtype=np.uint8)
        buf = self._buf
        rh, rw = image.shape
        buf[:rh, :rw] = image
        if rw < w:
            buf[:rh, rw:] = image[:, -1:]
        if rh < h:
            buf[rh:h] = buf[rh - 1 : rh]
        frame = av.VideoFrame.from_ndarray(buf, format="yuv420p")
        frame.color_range = _RANGE_JPEG
        return frame

    def close(self) -> None:
        """Flush the encoder and write the trailer; the container is closed even on error."""
        container, self._container = self._container, None
        if container is None:
            return
        try:
            for packet in self._stream.encode():
                container.mux(packet)
        finally:
            container.close()


def _letterbox(image: np.ndarray, w: int, h: int) -> np.ndarray:
    """``image`` scaled to fit (w, h), aspect kept, centred on black."""
    import cv2

    ih, iw = image.shape[:2]
    scale = min(w / iw, h / ih)
    nw, nh = max(1, round(iw * scale)), max(1, round(ih * scale))
    out = np.zeros((h, w, *image.shape[2:]), dtype=np.uint8)
    y, x = (h - nh) // 2, (w - nw) // 2
    out[y : y + nh, x : x + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
    return out


def count_video_frames(path: Path) -> int:
    """Frames in a (possibly cut) recording, by demuxing packets without decoding them."""
    import av

    try:
        size = path.stat().st_size
        container = av.open(str(path))
    except (av.FFmpegError, OSError):
        return 0
    n = 0
    try:
        for packet in container.demux(video=0):
            # A fragment cut by a crash lists samples whose bytes never reached the disk.
            # (FFmpeg hands out a sample cut short as a smaller packet flagged corrupt.)
            whole = not packet.is_corrupt and (packet.pos or 0) + packet.size <= size
            n += int(packet.size > 0 and whole)
    except (av.FFmpegError, OSError):
        pass  # a cut last fragment: count what came before it
    finally:
        container.close()
    return n
