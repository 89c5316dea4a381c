"""Image region -> model input: gray, fitted to a square, scaled (``norm``).

Two ways to fit a region to the ``size`` x ``size`` input (``fit``; a model
card names its own, see FITS):

- "letterbox" (the default, every bundle up to 0.13.0): keep the aspect
  ratio, pad to a centred square with zeros. A wide sector region uses only
  part of the square's height.
- "stretch": resize the region to the full square, scaling height and width
  by different factors. No pixel is padding, so a region 1.7x wider than
  tall gets 1.7x the rows of its letterbox; anatomy looks taller than it is.

The letterbox pads the region to a square (centred, zeros) and resizes it to
``size`` x ``size``. It is computed as resize-then-pad, which gives the same
picture as pad-then-resize up to sub-pixel rounding of the pad width, but
touches fewer pixels and keeps the pad exactly zero. Area downscaling by more
than 2x first halves the image with OpenCV's integer-factor area fast path
(a box-filter pyramid) and finishes with one area resize: about 0.3 ms
instead of 3 ms for a 1080p frame, with a slightly different (still
anti-aliased) result from one direct area resize. Training, export checks and
every engine call these same functions, so the model always sees one
geometry.

``letterbox_geometry`` describes where the region lands inside the square so
that a heatmap over the model input can be mapped back onto region pixels
(``heatmap_to_region``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

log = logging.getLogger(__name__)

INPUT_SIZE = 256
LETTERBOX = "pad-square-centre-zero"
FITS: dict[str, str] = {"letterbox": LETTERBOX, "stretch": "stretch-to-square"}
SCALE = "1/255"
_INV_255 = np.float32(1.0 / 255.0)

# How the fitted gray picture becomes the model's float input (a bundle's ``norm``):
# "none" divides by 255 (every bundle up to 0.18.0); "percentile" stretches each frame
# so its NORM_LOW_Q quantile lands on 0 and its NORM_HIGH_Q quantile on NORM_TARGET,
# which undoes the scanner's gain and black level (docs/model_bundle.md, "Norm").
NORMS: dict[str, str] = {
    "none": "divide by 255",
    "percentile": "per frame: subtract the 1st percentile, clip at 0, scale the 99th to 0.7",
}
NORM_LOW_Q = 0.01
NORM_HIGH_Q = 0.99
NORM_TARGET = 0.7  # where the 99th percentile lands (the phantom's median is about 182/255)
NORM_MIN_SPAN = 64  # gray levels: a blank or near-blank frame is not stretched further


@dataclass(frozen=True)
class LetterboxGeometry:
    """Where an (h, w) region lands inside a ``size`` x ``size`` letterbox.

    The region's content occupies rows ``top:top + content_h`` and columns
    ``left:left + content_w``; everything else is padding. ``scale_y`` and
    ``scale_x`` are letterbox pixels per region pixel (equal up to rounding).
    """

    h: int
    w: int
    size: int
    content_h: int
    content_w: int
    top: int
    left: int

    @property
    def scale_y(self) -> float:
        return self.content_h / self.h

    @property
    def scale_x(self) -> float:
        return self.content_w / self.w

    def to_letterbox(self, x: float, y: float) -> tuple[float, float]:
        """Region pixel centre (x, y) -> letterbox pixel coordinates (u, v)."""
        return self.left + (x + 0.5) * self.scale_x - 0.5, self.top + (y + 0.5) * self.scale_y - 0.5

    def to_region(self, u: float, v: float) -> tuple[float, float]:
        """Letterbox pixel coordinates (u, v) -> region pixel coordinates (x, y)."""
        return (u + 0.5 - self.left) / self.scale_x - 0.5, (v + 0.5 - self.top) / self.scale_y - 0.5


def check_fit(fit: str) -> str:
    """``fit`` if it is one of FITS, else ValueError naming the valid ones."""
    if fit not in FITS:
        raise ValueError(f"fit must be one of {', '.join(FITS)}, got {fit!r}")
    return fit


def letterbox_geometry(
    h: int, w: int, size: int = INPUT_SIZE, fit: str = "letterbox"
) -> LetterboxGeometry:
    """Geometry of an (h, w) region fitted (``fit``) into a ``size`` square."""
    if h <= 0 or w <= 0 or size <= 0:
        raise ValueError(f"letterbox needs positive sizes, got h={h} w={w} size={size}")
    if check_fit(fit) == "stretch":
        return LetterboxGeometry(h=h, w=w, size=size, content_h=size, content_w=size, top=0, left=0)
    side = max(h, w)
    content_h = max(1, round(h * size / side))
    content_w = max(1, round(w * size / side))
    return LetterboxGeometry(
        h=h,
        w=w,
        size=size,
        content_h=content_h,
        content_w=content_w,
        top=(size - content_h) // 2,
        left=(size - content_w) // 2,
    )


def letterbox(
    image: np.ndarray,
    size: int = INPUT_SIZE,
    interpolation: int = cv2.INTER_AREA,
    fit: str = "letterbox",
) -> np.ndarray:
    """Fit ``image`` (H, W) or (H, W, C) into a ``size`` square (``fit``, see the module doc).

    uint8 and float images keep their dtype; bool masks come back as float32
    coverage fractions in [0, 1] (threshold them if a hard mask is needed).
    """
    image = np.asarray(image)
    if image.dtype == np.bool_ or image.dtype == np.float16:
        image = image.astype(np.float32)
    if image.ndim not in (2, 3):
        raise ValueError(f"letterbox needs an (H, W) or (H, W, C) image, got shape {image.shape}")
    geo = letterbox_geometry(image.shape[0], image.shape[1], size, fit)
    if (geo.content_h, geo.content_w) == image.shape[:2]:
        content = image
    else:
        content = _resize(image, geo.content_w, geo.content_h, interpolation)
        if (geo.content_h, geo.content_w) == (size, size):
            # A fresh array that fills the square (a stretch fit): nothing to pad.
            return content.reshape(size, size, *image.shape[2:])
    out = np.zeros((size, size, *image.shape[2:]), dtype=image.dtype)
    out[geo.top : geo.top + geo.content_h, geo.left : geo.left + geo.content_w] = content.reshape(
        geo.content_h, geo.content_w, *image.shape[2:]
    )
    return out


def _resize(image: np.ndarray, w: int, h: int, interpolation: int) -> np.ndarray:
    if interpolation == cv2.INTER_AREA:
        while image.shape[0] >= 2 * h and image.shape[1] >= 2 * w:
            h2, w2 = image.shape[0] // 2, image.shape[1] // 2
            # An odd last row/column is dropped so the 2x fast path applies.
            image = cv2.resize(image[: 2 * h2, : 2 * w2], (w2, h2), interpolation=cv2.INTER_AREA)
    return cv2.resize(image, (w, h), interpolation=interpolation)


def heatmap_to_region(
    heatmap: np.ndarray, region_shape: tuple[int, ...], fit: str = "letterbox"
) -> np.ndarray:
    """Map a square heatmap over the model input back onto the region's pixels.

    ``heatmap`` is (S, S) or (1, S, S) at any S (32 for the network's map);
    ``region_shape`` is the (H, W[, C]) of the region that was preprocessed
    and ``fit`` the model's (its bundle's ``fit``). Returns float32 (H, W),
    bilinear, padding cut away. One warpAffine call.
    """
    hm = np.asarray(heatmap, dtype=np.float32)
    if hm.ndim == 3 and hm.shape[0] == 1:
        hm = hm[0]
    if hm.ndim != 2 or hm.shape[0] != hm.shape[1]:
        raise ValueError(f"heatmap must be square (S, S) or (1, S, S), got shape {heatmap.shape}")
    h, w = int(region_shape[0]), int(region_shape[1])
    s = hm.shape[0]
    geo = letterbox_geometry(h, w, s, fit)
    # Region pixel centre x maps to heatmap column left + (x + 0.5) * scale - 0.5.
    matrix = np.array(
        [
            [geo.scale_x, 0.0, geo.left + 0.5 * geo.scale_x - 0.5],
            [0.0, geo.scale_y, geo.top + 0.5 * geo.scale_y - 0.5],
        ],
        dtype=np.float64,
    )
    return cv2.warpAffine(
        hm,
        matrix,
        (w, h),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )


def to_gray(image: np.ndarray, order: str = "bgr") -> np.ndarray:
    """Gray uint8 (H, W) from gray (H, W) / (H, W, 1) or colour (H, W, 3|4) uint8.

    ``order`` is the channel order of colour input: "bgr" (OpenCV, PyAV bgr24)
    or "rgb" (Pillow); the luma weights are ITU-R BT.601.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"to_gray needs a uint8 image, got {image.dtype}")
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    if image.ndim == 3 and image.shape[2] in (3, 4):
        codes = {
            ("bgr", 3): cv2.COLOR_BGR2GRAY,
            ("rgb", 3): cv2.COLOR_RGB2GRAY,
            ("bgr", 4): cv2.COLOR_BGRA2GRAY,
            ("rgb", 4): cv2.COLOR_RGBA2GRAY,
        }
        code = codes.get((order, image.shape[2]))
        if code is None:
            raise ValueError(f"to_gray order must be 'bgr' or 'rgb', got {order!r}")
        return cv2.cvtColor(image, code)
    raise ValueError(f"to_gray needs (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {image.shape}")


def check_norm(norm: str) -> str:
    """``norm`` if it is one of NORMS, else ValueError naming the valid ones."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
    return norm


def norm_params(gray: np.ndarray, norm: str = "none") -> tuple[float, float]:
    """(offset, scale) that map a uint8 gray picture to model input: ``max(x - offset, 0) * scale``.

    "none": (0, 1/255). "percentile": the 1st and 99th percentiles (the
    "lower" rank, floor(q * (n - 1)) of the sorted pixels, read off a
    histogram) give offset = p1 and scale = NORM_TARGET / max(p99 - p1,
    NORM_MIN_SPAN): a frame's gain and black level no longer change its
    input, up to clipping at 255.
    """
    if gray.dtype != np.uint8:
        raise ValueError(f"norm_params needs a uint8 picture, got {gray.dtype}")
    if check_norm(norm) == "none":
        return 0.0, float(_INV_255)
    flat = np.ascontiguousarray(gray).reshape(-1)
    if flat.size == 0:
        raise ValueError("norm_params needs a non-empty picture")
    counts = np.bincount(flat, minlength=256).cumsum()
    last = flat.size - 1
    low = int(np.searchsorted(counts, int(NORM_LOW_Q * last), side="right"))
    high = int(np.searchsorted(counts, int(NORM_HIGH_Q * last), side="right"))
    return float(low), NORM_TARGET / max(high - low, NORM_MIN_SPAN)


def normalize(gray: np.ndarray, norm: str = "none", out: np.ndarray | None = None) -> np.ndarray:
    """A fitted uint8 gray picture (H, W) -> float32 model input (H, W) (``norm``, see NORMS).

    The one place where gray levels become input values: every engine (via
    ``preprocess``) and training batches call it, and training validation under
    a norm other than "none" (its "none" divides by 255 in torch).
    """
    offset, scale = norm_params(gray, norm)
    if out is None:
        out = np.empty(gray.shape, dtype=np.float32)
    if offset == 0.0:
        np.multiply(gray, np.float32(scale), out=out, dtype=np.float32)
        return out
    np.subtract(gray, np.float32(offset), out=out, dtype=np.float32)
    np.maximum(out, np.float32(0.0), out=out)
    np.multiply(out, np.float32(scale), out=out)
    return out


def preprocess(
    image: np.ndarray,
    size: int = INPUT_SIZE,
    out: np.ndarray | None = None,
    fit: str = "letterbox",
    norm: str = "none",
) -> np.ndarray:
    """One gray or colour uint8 region -> float32 (1, size, size) model input.

    ``out`` (float32, (1, size, size)) is filled in place when given, so a
    caller can preprocess straight into a batch or a pinned buffer. ``fit``:
    how the region fills the square (the bundle's ``fit``); ``norm``: how gray
    levels become values (the bundle's ``norm``; "none" gives [0, 1]).
    """
    boxed = letterbox(to_gray(image), size, cv2.INTER_AREA, fit)
    if out is None:
        out = np.empty((1, size, size), dtype=np.float32)
    elif out.shape != (1, size, size) or out.dtype != np.float32:
        raise ValueError(f"out must be float32 (1, {size}, {size}), got {out.dtype} {out.shape}")
    normalize(boxed, norm, out=out[0])
    return out


def preprocess_batch(
    images: Sequence[np.ndarray],
    size: int = INPUT_SIZE,
    fit: str = "letterbox",
    norm: str = "none",
) -> np.ndarray:
    """Regions -> float32 (N, 1, size, size) model input (``fit``, ``norm``)."""
    batch = np.empty((len(images), 1, size, size), dtype=np.float32)
    for i, image in enumerate(images):
        preprocess(image, size, out=batch[i], fit=fit, norm=norm)
    return batch
