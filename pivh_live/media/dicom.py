"""DICOM files (native, compressed and encapsulated video) to gray frames with pydicom."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pivh_live.errors import MediaError
from pivh_live.media.common import DEFAULT_FPS, MediaFrame, MediaInfo, rgb_to_gray
from pivh_live.media.video import _iter_video

log = logging.getLogger(__name__)

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
# Ultrasound, and the secondary-capture modalities a scanner's screen grabs are stored under.
ACCEPTED_MODALITIES = frozenset({"US", "OT", "SC", "XC"})
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
    modality = str(ds.get("Modality", "") or "").strip().upper()
    if modality and modality not in ACCEPTED_MODALITIES:
        raise MediaError(
            f"DICOM file {path} is a {modality} image, not ultrasound; pivh-live reads cranial "
            "ultrasound (Modality US, or OT/SC for screen captures)"
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
