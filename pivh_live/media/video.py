"""Video decoding with PyAV to gray frames.

Luma is read straight from the decoded planes with the range (full or
limited "TV") decided here, including H.264 4:0:0 streams that FFmpeg
presents as untagged yuv420p.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from pivh_live.errors import MediaError
from pivh_live.media.common import DEFAULT_FPS, MediaFrame, MediaInfo, rgb_to_gray

log = logging.getLogger(__name__)

# Planar formats whose first plane is luma alone: read it directly, which
# keeps odd sizes and line padding under our control and avoids swscale's
# range guesses (see _y_to_uint8).
_Y_PLANE_8 = re.compile(r"^(gray|yuvj?a?4\d\dp|nv\d\d)$")
_Y_PLANE_DEEP = re.compile(r"^(gray|yuvj?a?4\d\dp)(9|10|12|14|16)(le|be)$")
_H264_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})


def _open_video(src: str | BinaryIO, name: str, fmt: str | None = None) -> Any:
    import av

    try:
        container = av.open(src, format=fmt)
    except FileNotFoundError as exc:
        raise MediaError(f"{name} does not exist; check the path") from exc
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise MediaError(
            f"cannot open {name} as video ({exc}); check that the file is complete and a "
            "format FFmpeg reads (mp4, mkv, avi, mov, webm, ...)"
        ) from exc
    if not container.streams.video:
        container.close()
        raise MediaError(f"{name} has no video stream; give a video, image folder or DICOM file")
    if container.streams.video[0].codec_context is None:  # damaged header or unknown codec
        container.close()
        raise MediaError(
            f"cannot decode {name}: its video header is damaged or its codec unknown; check that "
            "the file is complete, or re-encode it, e.g. ffmpeg -i IN -c:v libx264 OUT.mp4"
        )
    return container


def _stream_fps(stream: Any) -> float | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and float(rate) > 0:
            return float(rate)
    return None


def _probe_video(path: Path) -> MediaInfo:
    container = _open_video(str(path), str(path))
    try:
        stream = container.streams.video[0]
        cc = stream.codec_context
        return MediaInfo("video", stream.frames or None, _stream_fps(stream), cc.width, cc.height)
    finally:
        container.close()


def _iter_video(
    src: str | BinaryIO, name: str, max_frames: int | None, fmt: str | None = None
) -> Iterator[MediaFrame]:
    import av

    container = _open_video(src, name, fmt)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps = _stream_fps(stream) or DEFAULT_FPS
        start = stream.start_time or 0
        mono: bool | None = None
        index = 0
        try:
            for packet in container.demux(stream):
                if mono is None and packet.size:
                    mono = _is_monochrome_h264(stream, bytes(packet))
                for frame in packet.decode():
                    if max_frames is not None and index >= max_frames:
                        return
                    t = (
                        float((frame.pts - start) * stream.time_base)
                        if frame.pts is not None and stream.time_base
                        else index / fps
                    )
                    yield MediaFrame(index, t, _frame_to_gray(frame, bool(mono)))
                    index += 1
            _warn_if_short(container, stream, fps, index, name)
        except av.FFmpegError as exc:
            if index == 0:
                raise MediaError(
                    f"cannot decode {name} ({exc}); the file is corrupt or uses an unsupported "
                    "codec; re-encode it, e.g. ffmpeg -i IN -c:v libx264 OUT.mp4"
                ) from exc
            log.warning(
                "%s: decoding stopped after %d frames (%s); the file is probably truncated, "
                "using the frames decoded so far",
                name,
                index,
                exc,
            )
    finally:
        container.close()


def _warn_if_short(container: Any, stream: Any, fps: float, decoded: int, name: str) -> None:
    """A cut-off Matroska/AVI file just ends: compare with the length its header promised."""
    expected = stream.frames or (round(container.duration / 1e6 * fps) if container.duration else 0)
    if decoded < expected - 1:  # one frame of slack for rounding and edit lists
        log.warning(
            "%s: decoded %d of the %d frames its header announces; the file is probably "
            "truncated, using the frames decoded so far",
            name,
            decoded,
            expected,
        )


def _is_monochrome_h264(stream: Any, first_packet: bytes) -> bool:
    """True for H.264 4:0:0 (chroma_format_idc 0).

    FFmpeg decodes it as untagged yuv420p with neutral chroma, which by
    convention means limited range, but its luma is the encoder's full-range
    gray input; only the SPS tells the two apart.
    """
    if stream.codec_context.name != "h264":
        return False
    for data in (stream.codec_context.extradata or b"", first_packet):
        sps = _find_sps(data)
        if sps is not None:
            return _sps_chroma_format(sps) == 0
    return False


def _find_sps(data: bytes) -> bytes | None:
    if len(data) > 8 and data[0] == 1:  # avcC record (mp4, mkv)
        if data[5] & 0x1F == 0:
            return None
        size = int.from_bytes(data[6:8], "big")
        return data[8 : 8 + size]
    pos = data.find(b"\x00\x00\x01")  # Annex B stream (ts, raw .h264)
    while 0 <= pos < len(data) - 3:
        if data[pos + 3] & 0x1F == 7:
            end = data.find(b"\x00\x00\x01", pos + 3)
            return data[pos + 3 : end if end > 0 else len(data)]
        pos = data.find(b"\x00\x00\x01", pos + 3)
    return None


def _sps_chroma_format(sps: bytes) -> int | None:
    rbsp = sps.replace(b"\x00\x00\x03", b"\x00\x00")
    if len(rbsp) < 5:
        return None
    if rbsp[1] not in _H264_HIGH_PROFILES:
        return 1  # profiles below High are always 4:2:0
    bits = "".join(f"{b:08b}" for b in rbsp[4:20])
    pos, value = 0, None
    for _ in range(2):  # seq_parameter_set_id, then chroma_format_idc: both ue(v)
        zeros = len(bits[pos:]) - len(bits[pos:].lstrip("0"))
        end = pos + 2 * zeros + 1
        if end > len(bits):
            return None
        value = (1 << zeros) - 1 + (int(bits[pos + zeros + 1 : end], 2) if zeros else 0)
        pos = end
    return value


def _frame_to_gray(frame: Any, mono: bool) -> np.ndarray:
    fmt = frame.format
    name = fmt.name
    if _Y_PLANE_8.match(name) or _Y_PLANE_DEEP.match(name):
        bits = fmt.components[0].bits
        full = mono or name.startswith(("gray", "yuvj")) or int(frame.color_range) == 2
        return _y_to_uint8(_luma_plane(frame, bits, name.endswith("be")), bits, full)
    if fmt.is_rgb or fmt.has_palette:
        return rgb_to_gray(frame.to_ndarray(format="rgb24"))
    return frame.to_ndarray(format="gray")  # packed yuv, bayer, ...: let swscale do it


def _luma_plane(frame: Any, bits: int, big_endian: bool) -> np.ndarray:
    plane = frame.planes[0]
    item = 1 if bits <= 8 else 2
    rows = np.frombuffer(plane, np.uint8, count=plane.line_size * plane.height)
    rows = rows.reshape(plane.height, plane.line_size)[:, : plane.width * item]
    if item == 1:
        return rows
    return np.ascontiguousarray(rows).view(">u2" if big_endian else "<u2")


@functools.lru_cache(maxsize=16)
def _range_lut(bits: int, full: bool) -> np.ndarray:
    """Map ``bits``-bit luma to 0-255; limited ("TV") range 16-235 is stretched."""
    v = np.arange(1 << bits, dtype=np.float64)
    scale = 1 << (bits - 8)
    out = v / ((1 << bits) - 1) * 255.0 if full else (v - 16 * scale) * 255.0 / (219 * scale)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _y_to_uint8(y: np.ndarray, bits: int, full: bool) -> np.ndarray:
    if bits == 8 and full:
        return y.copy()  # the decoder reuses its buffers
    return _range_lut(bits, full)[y]
