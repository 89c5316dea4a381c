"""Network streams (udp, rtp, rtsp, srt, tcp) decoded with PyAV at low latency.

FFmpeg is asked not to buffer (``fflags=nobuffer``, ``flags=low_delay``, a
short probe) and PyAV's open/read timeouts interrupt a stalled socket, so a
dead sender raises instead of hanging. Decoding runs in a `LatestFrameReader`
thread: when the consumer is slower than the stream, old frames are dropped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from pivh_live.errors import SourceError
from pivh_live.frames import Frame
from pivh_live.sources.base import DEFAULT_READ_TIMEOUT_S, Clock, Source, redact
from pivh_live.sources.latest import LatestFrameReader
from pivh_live.sources.spec import SourceSpec, choice, positive_float, take_options

log = logging.getLogger(__name__)

OPTIONS = {
    "open_timeout": positive_float,
    "read_timeout": positive_float,
    "transport": choice("tcp", "udp"),
}
DEFAULT_OPEN_TIMEOUT_S = 10.0


def ffmpeg_options(scheme: str, transport: str | None) -> dict[str, str]:
    """Demuxer/protocol options that keep FFmpeg from buffering."""
    options = {
        "fflags": "nobuffer",
        "flags": "low_delay",
        "probesize": "500000",
        "analyzeduration": "1000000",
    }
    if scheme in ("udp", "rtp"):
        # A slow reader must lose old packets, not stop the stream.
        options.update({"overrun_nonfatal": "1", "fifo_size": "100000"})
    if scheme == "rtsp":
        options["rtsp_transport"] = transport or "tcp"
    return options


class StreamSource(Source):
    kind = "stream"

    def __init__(
        self,
        spec: str,
        url: str,
        *,
        open_timeout_s: float = DEFAULT_OPEN_TIMEOUT_S,
        read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
        transport: str | None = None,
        clock: Clock = time.monotonic_ns,
        open_container: Callable[..., Any] | None = None,
    ) -> None:
        super().__init__(spec, clock=clock)
        self.url = url
        self._open_timeout_s = open_timeout_s
        self._read_timeout_s = read_timeout_s
        self._transport = transport
        self._open_container = open_container
        self._geom: tuple[int, int, float] = (0, 0, 0.0)
        self._reader: LatestFrameReader | None = None
        self._frames: Any = None
        self._synced = False

    def _open(self) -> None:
        import av

        opener = self._open_container or av.open
        scheme = urlsplit(self.url).scheme
        shown = redact(self.url)
        try:
            container = opener(
                self.url,
                options=ffmpeg_options(scheme, self._transport),
                timeout=(self._open_timeout_s, self._read_timeout_s),
            )
        except (av.FFmpegError, OSError) as exc:
            raise SourceError(
                f"cannot open stream {shown}: {_reason(exc)}; check that the sender is running "
                "and the address and port are right"
            ) from None
        if not container.streams.video:
            container.close()
            raise SourceError(f"stream {shown} has no video track")
        stream = container.streams.video[0]
        stream.thread_type = "SLICE"  # frame threading would add frames of delay
        rate = stream.average_rate or stream.guessed_rate or 0
        self._geom = (stream.codec_context.width, stream.codec_context.height, float(rate))
        self._frames = container.decode(stream)
        self._synced = False
        self._reader = LatestFrameReader(
            self._grab, clock=self._clock, name=f"stream {shown}", on_exit=container.close
        )
        self._reader.start()

    def _grab(self) -> tuple[Any, float] | None:
        import av

        while True:
            try:
                frame = next(self._frames)
            except StopIteration:
                return None
            except (av.FFmpegError, OSError) as exc:
                raise SourceError(
                    f"stream {redact(self.url)} stopped: {_reason(exc)}; check the sender"
                ) from None
            # A receiver that joins mid-stream gets predicted frames without
            # their reference first; some decoders show them as smeared grey.
            self._synced = self._synced or bool(frame.key_frame)
            if self._synced:
                return frame, float(frame.time) if frame.time is not None else 0.0

    def _read(self, timeout_s: float | None) -> Frame | None:
        assert self._reader is not None
        item = self._reader.get(self._read_timeout_s if timeout_s is None else timeout_s)
        self.stats.dropped = self._reader.dropped
        if item is None:
            raise SourceError(f"stream {redact(self.url)} ended; restart the sender")
        av_frame, media_time_s, t_ns = item
        # Converted here, not in the thread, so dropped frames cost no conversion.
        image = av_frame.to_ndarray(format="bgr24")
        self._geom = (image.shape[1], image.shape[0], self._geom[2])
        return self._stamp(image, media_time_s, t_ns)

    def _close(self) -> None:
        if self._reader is not None:
            self._reader.stop(join_timeout_s=self._read_timeout_s + 1.0)
        self._reader = None
        self._frames = None

    def _geometry(self) -> tuple[int, int, float]:
        return self._geom


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if "Immediate exit requested" in text:
        return "timed out waiting for data"
    return redact(text)


def create(spec: SourceSpec, *, clock: Clock = time.monotonic_ns, **_: Any) -> StreamSource:
    opts = take_options(spec, OPTIONS, {})
    return StreamSource(
        spec.text,
        spec.target,
        open_timeout_s=opts.get("open_timeout", DEFAULT_OPEN_TIMEOUT_S),
        read_timeout_s=opts.get("read_timeout", DEFAULT_READ_TIMEOUT_S),
        transport=opts.get("transport"),
        clock=clock,
    )
