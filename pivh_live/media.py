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

import functools
import io
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np

from pivh_live.errors import MediaError

log = logging.getLogger(__name__)

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
        files = _list_images(path)
        first = _read_image(files[0])
        return MediaInfo("images", len(files), _folder_fps(path), first.shape[1], first.shape[0])
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


def rgb_to_gray(image: np.ndarray, *, bgr: bool = False) -> np.ndarray:
    """BT.601 luma of an 8-bit (H, W, 3+) RGB (or BGR) image, rounded to uint8."""
    c = image[..., :3].astype(np.uint32)
    r, g, b = (c[..., 2], c[..., 1], c[..., 0]) if bgr else (c[..., 0], c[..., 1], c[..., 2])
    # 0.299, 0.587, 0.114 in 16-bit fixed point; the weights sum to exactly 65536.
    return ((19595 * r + 38470 * g + 7471 * b + 32768) >> 16).astype(np.uint8)


def _fps_from_times(times: list[float]) -> float:
    diffs = np.diff(np.asarray(times))
    diffs = diffs[diffs > 0]
    return float(1.0 / np.median(diffs)) if diffs.size else DEFAULT_FPS


# --- video (PyAV) -----------------------------------------------------------

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


# --- image folders ------------------------------------------------------------


def _natural_key(name: str) -> tuple[tuple[int | str, ...], str]:
    parts = re.split(r"(\d+)", name.lower())
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts)), name


def _list_images(folder: Path) -> list[Path]:
    images: list[Path] = []
    for entry in sorted(folder.iterdir(), key=lambda p: _natural_key(p.name)):
        if entry.name.startswith(".") or entry.name == FPS_FILE:
            continue
        if entry.is_file() and entry.suffix.lower() in IMAGE_EXTENSIONS:
            images.append(entry)
        else:
            log.warning("%s: skipping %s, not a png/jpg/bmp/tif image", folder, entry.name)
    if not images:
        raise MediaError(f"image folder {folder} holds no png/jpg/jpeg/bmp/tif/tiff images")
    return images


def _folder_fps(folder: Path) -> float:
    fps_file = folder / FPS_FILE
    if not fps_file.is_file():
        return DEFAULT_FPS
    text = fps_file.read_text(encoding="utf-8", errors="replace").strip()
    try:
        fps = float(text)
    except ValueError:
        fps = 0.0
    if not 0 < fps < 10_000:
        raise MediaError(f"{fps_file} must hold one positive number (frames per second)")
    return fps


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            if getattr(im, "n_frames", 1) > 1:
                log.warning("%s has %d pages; using the first", path, im.n_frames)
            return _pil_to_gray(im)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise MediaError(f"cannot read image {path} ({exc}); replace or remove it") from exc


def _pil_to_gray(im: Any) -> np.ndarray:
    if im.mode == "L":
        return np.array(im, dtype=np.uint8)
    if im.mode == "LA":
        return np.array(im.getchannel("L"), dtype=np.uint8)
    if im.mode == "1":
        return np.array(im.convert("L"), dtype=np.uint8)
    if im.mode.startswith("I"):  # 16-bit gray (I;16*, or I as Pillow opens 16-bit PNG)
        arr = np.asarray(im).astype(np.float64)
        return np.clip(np.rint(arr / 257.0), 0, 255).astype(np.uint8)
    if im.mode == "F":
        return np.clip(np.rint(np.asarray(im)), 0, 255).astype(np.uint8)
    return rgb_to_gray(np.asarray(im.convert("RGB")))


def _iter_images(folder: Path, max_frames: int | None) -> Iterator[MediaFrame]:
    files = _list_images(folder)
    fps = _folder_fps(folder)
    shape: tuple[int, ...] | None = None
    for index, path in enumerate(files[:max_frames]):
        image = _read_image(path)
        if shape is not None and image.shape != shape:
            raise MediaError(
                f"{path} is {image.shape[1]}x{image.shape[0]} but the folder's first image is "
                f"{shape[1]}x{shape[0]}; all images of a clip must have one size"
            )
        shape = image.shape
        yield MediaFrame(index, index / fps, image)


# --- DICOM (pydicom) --------------------------------------------------------

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
# Encapsulated video transfer syntaxes: the pixel data is one elementary stream.
_MPEG_DEMUXERS = {"MPEG2": "mpegvideo", "MPEG-4": "h264", "HEVC": "hevc"}


def _read_dicom_header(path: Path) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        # defer_size keeps the pixel data on disk until a frame is decoded.
        ds = pydicom.dcmread(path, defer_size="64 KB")
    except FileNotFoundError as exc:
        raise MediaError(f"{path} does not exist; check the path") from exc
    except InvalidDicomError as exc:
        raise MediaError(f"{path} is not a DICOM file (no DICM preamble); re-export it") from exc
    except Exception as exc:  # pydicom raises many types for damaged files
        raise MediaError(f"cannot read DICOM file {path} ({exc}); re-export it") from exc
    if not any(k in ds for k in _PIXEL_KEYWORDS):
        raise MediaError(
            f"DICOM file {path} has no pixel data; it is probably a report or presentation "
            "state, export the image or cine loop instead"
        )
    return ds


def _dicom_fps(ds: Any) -> float:
    candidates = (
        ("FrameTime", lambda v: 1000.0 / v),
        ("CineRate", lambda v: v),
        ("RecommendedDisplayFrameRate", lambda v: v),
    )
    for keyword, to_fps in candidates:
        try:
            value = float(ds.get(keyword) or 0)
            fps = to_fps(value) if value > 0 else 0.0
        except (TypeError, ValueError):
            continue
        if 0 < fps < 10_000:
            return fps
    return DEFAULT_FPS


def _dicom_n_frames(ds: Any) -> int:
    try:
        return max(1, int(ds.get("NumberOfFrames") or 1))
    except (TypeError, ValueError):
        return 1


def _transfer_syntax(ds: Any) -> Any:
    from pydicom.uid import ExplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    return meta.get("TransferSyntaxUID", ExplicitVRLittleEndian) if meta else ExplicitVRLittleEndian


def _mpeg_demuxer(ts: Any) -> str | None:
    from pydicom.uid import MPEGTransferSyntaxes

    if ts not in MPEGTransferSyntaxes:
        return None
    return next((fmt for key, fmt in _MPEG_DEMUXERS.items() if key in ts.name), "h264")


def _probe_dicom(path: Path) -> MediaInfo:
    ds = _read_dicom_header(path)
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
    except (AttributeError, TypeError, ValueError) as exc:
        raise MediaError(f"DICOM file {path} lacks Rows/Columns; re-export it") from exc
    return MediaInfo("dicom", _dicom_n_frames(ds), _dicom_fps(ds), cols, rows)


def _check_decoder(path: Path, ts: Any) -> None:
    from pydicom.pixels import get_decoder

    try:
        decoder = get_decoder(ts)
    except NotImplementedError as exc:
        raise MediaError(
            f"DICOM file {path} uses transfer syntax {ts.name} ({ts}), which cannot be decoded; "
            "convert it with e.g. gdcmconv --raw"
        ) from exc
    if not decoder.is_available:
        installs = sorted({_pip_names(d) for d in decoder.missing_dependencies})
        raise MediaError(
            f"DICOM file {path} uses transfer syntax {ts.name} ({ts}) and no decoder for it is "
            f"installed; install one of: {' | '.join(f'pip install {p}' for p in installs)}"
        )


def _pip_names(requirement: str) -> str:
    """'pylibjpeg - requires pylibjpeg>=2.0 and pylibjpeg-libjpeg>=2.1' -> pip names."""
    wanted = requirement.split("requires", 1)[-1].split(" and ")
    names = [re.split(r"[<>=!\s]", w.strip(), maxsplit=1)[0] for w in wanted]
    names = ["python-gdcm" if n == "gdcm" else n for n in names if n and n != "numpy"]
    return " ".join(names)


def _iter_dicom(path: Path, max_frames: int | None) -> Iterator[MediaFrame]:
    ds = _read_dicom_header(path)
    fps = _dicom_fps(ds)
    ts = _transfer_syntax(ds)
    demuxer = _mpeg_demuxer(ts)
    if demuxer is not None:
        # A raw elementary stream has no reliable timing; the DICOM header does.
        for f in _iter_dicom_video(path, ds, demuxer, max_frames):
            yield MediaFrame(f.index, f.index / fps, f.image)
        return
    _check_decoder(path, ts)
    n = _dicom_n_frames(ds)
    indices = range(n if max_frames is None else min(n, max_frames))
    if _is_native_ybr422(ds, ts):
        images = _ybr422_luma(path, ds, indices)
    else:
        to_gray = _DicomGray(path, ds, indices)
        images = (to_gray(arr) for arr in _dicom_pixels(path, indices))
    done = 0
    try:
        for image in images:
            yield MediaFrame(done, done / fps, image)
            done += 1
    except MediaError as exc:
        if done == 0:
            raise
        log.warning("%s: decoding stopped after %d frames (%s)", path, done, exc)


def _dicom_pixels(path: Path, indices: range) -> Iterator[np.ndarray]:
    from pydicom.pixels import iter_pixels

    try:
        yield from iter_pixels(path, indices=indices)
    except MediaError:
        raise
    except Exception as exc:  # decoder plugins raise anything from ValueError to RuntimeError
        raise MediaError(f"cannot decode pixel data of DICOM file {path} ({exc})") from exc


def _is_native_ybr422(ds: Any, ts: Any) -> bool:
    from pydicom.uid import UncompressedTransferSyntaxes

    pi = str(ds.get("PhotometricInterpretation", "")).upper()
    return pi == "YBR_FULL_422" and ts in UncompressedTransferSyntaxes


def _ybr422_luma(path: Path, ds: Any, indices: range) -> Iterator[np.ndarray]:
    """Y of native YBR_FULL_422 (Y0 Y1 Cb Cr per pixel pair); full-range Y is the luma.

    Read by hand: pydicom 3.0 miscounts the frame length of this layout
    after the first frame.
    """
    rows, cols = int(ds.Rows), int(ds.Columns)
    if cols % 2 or int(ds.get("BitsAllocated") or 8) != 8:
        raise MediaError(f"DICOM file {path}: YBR_FULL_422 needs 8 bits and an even width")
    data, size = ds.PixelData, rows * cols * 2
    for i in indices:
        chunk = data[i * size : (i + 1) * size]
        if len(chunk) < size:
            raise MediaError(f"DICOM file {path} ends inside frame {i}; it is truncated")
        pairs = np.frombuffer(chunk, np.uint8).reshape(rows, cols // 2, 4)
        yield np.ascontiguousarray(pairs[..., :2]).reshape(rows, cols)


def _iter_dicom_video(
    path: Path, ds: Any, demuxer: str, max_frames: int | None
) -> Iterator[MediaFrame]:
    from pydicom.encaps import generate_fragments

    try:
        stream = b"".join(generate_fragments(ds.PixelData))
    except Exception as exc:
        raise MediaError(f"cannot read the video stream in DICOM file {path} ({exc})") from exc
    yield from _iter_video(io.BytesIO(stream), str(path), max_frames, fmt=demuxer)


class _DicomGray:
    """Turns one decoded DICOM frame into display gray uint8.

    Rules (DICOM PS3.3 C.7.6.3, C.11): palette indices through the LUT,
    colour through BT.601 luma, more than 8 bits through rescale then the
    first VOI window (or the min-max of the frames read), MONOCHROME1 inverted.
    """

    def __init__(self, path: Path, ds: Any, indices: range) -> None:
        self.ds = ds
        self.photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
        self.bits = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 8)
        self.slope = float(ds.get("RescaleSlope") or 1.0)
        self.intercept = float(ds.get("RescaleIntercept") or 0.0)
        self.window = _first_window(ds)
        self.range: tuple[float, float] | None = None
        self.palette: np.ndarray | None = None
        mono = self.photometric.startswith("MONOCHROME")
        if mono and self.bits > 8 and self.window is None:
            self.range = self._min_max(path, indices)
        if self.photometric == "PALETTE COLOR":
            self.palette = self._palette_gray(path)

    def __call__(self, arr: np.ndarray) -> np.ndarray:
        if self.palette is not None:
            return self.palette[np.clip(arr, 0, len(self.palette) - 1)]
        if arr.ndim == 3:  # RGB; pydicom already converted YBR_* to RGB
            return rgb_to_gray(_scale_to_8bit(arr, self.bits))
        out = self._mono(arr)
        return 255 - out if self.photometric == "MONOCHROME1" else out

    def _mono(self, arr: np.ndarray) -> np.ndarray:
        if self.bits <= 8 and self.slope == 1.0 and self.intercept == 0.0:
            shift = 128 if arr.dtype.kind == "i" else 0
            return np.clip(arr.astype(np.int32) + shift, 0, 255).astype(np.uint8)
        x = arr.astype(np.float64) * self.slope + self.intercept
        if self.window is not None:
            c, w = self.window
            y = ((x - (c - 0.5)) / max(w - 1.0, 1.0) + 0.5) * 255.0
        else:
            lo, hi = self.range if self.range else (float(x.min()), float(x.max()))
            y = (x - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(x)
        return np.clip(np.rint(y), 0, 255).astype(np.uint8)

    def _palette_gray(self, path: Path) -> np.ndarray:
        """Gray value of every palette index, so a frame is one table lookup."""
        from pydicom.pixels import apply_color_lut

        dtype = np.uint8 if self.bits <= 8 else np.uint16
        try:
            rgb = apply_color_lut(np.arange(1 << min(self.bits, 16), dtype=dtype), self.ds)
        except Exception as exc:  # malformed LUT descriptors raise ValueError/KeyError
            raise MediaError(f"DICOM file {path} has a bad palette colour table ({exc})") from exc
        # 16-bit entries normally span 0-65535, but some writers store 0-255 in them.
        deep = rgb.dtype != np.uint8 and int(rgb.max(initial=0)) > 255
        return rgb_to_gray(_scale_to_8bit(rgb, 16) if deep else rgb.astype(np.uint8))

    def _min_max(self, path: Path, indices: range) -> tuple[float, float]:
        """One pass over the frames: one range for all so a cine does not flicker."""
        lo, hi = np.inf, -np.inf
        for arr in _dicom_pixels(path, indices):
            x = arr.astype(np.float64) * self.slope + self.intercept
            lo, hi = min(lo, float(x.min())), max(hi, float(x.max()))
        return (lo, hi) if lo <= hi else (0.0, 1.0)


def _first_window(ds: Any) -> tuple[float, float] | None:
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center is None or width is None:
        return None
    try:
        c = float(center[0] if _is_multi(center) else center)
        w = float(width[0] if _is_multi(width) else width)
    except (TypeError, ValueError, IndexError):
        return None
    return (c, w) if w >= 1 else None


def _is_multi(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str)


def _scale_to_8bit(arr: np.ndarray, bits: int) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    scale = 255.0 / ((1 << max(bits, 1)) - 1)
    return np.clip(np.rint(arr.astype(np.float64) * scale), 0, 255).astype(np.uint8)


# --- writing ---------------------------------------------------------------


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
            src_fmt = "gray" if gray else "bgr24"
            for image in frames:
                image = np.asarray(image)
                if pad_h or pad_w:
                    pad = ((0, pad_h), (0, pad_w)) + (((0, 0),) if image.ndim == 3 else ())
                    image = np.pad(image, pad, mode="edge")
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format=src_fmt)
                for packet in stream.encode(vf):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    except (av.FFmpegError, OSError, ValueError) as exc:  # ValueError: codec/container mismatch
        raise MediaError(f"cannot write video {path}: {exc}") from exc
    return path
