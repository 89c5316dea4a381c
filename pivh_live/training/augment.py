"""Seeded training augmentation on letterboxed uint8 ultrasound images.

Every transform takes an explicit ``np.random.Generator``. Geometric
transforms (flip, rotation about the fontanelle apex, display depth, shift)
are 2x3 affine matrices about the letterbox content box; ``Augmenter``
composes them into one ``cv2.warpAffine`` applied to the image and, with the
same matrix, to the lesion mask, so masks stay aligned. Intensity transforms
(gain, gamma, dynamic range) compose into one 256-entry lookup table that
keeps exact black black: letterbox padding and the area outside the sector
are 0 at inference too. Speckle, blur and additive noise follow.

Frame grades do not depend on the side, so a horizontal flip (which swaps
left and right hemispheres) keeps the label.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

Box = tuple[int, int, int, int]  # top, left, height, width of the content inside the image
Pair = tuple[np.ndarray, np.ndarray | None]  # image, mask
Mask = np.ndarray | None


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities (``p_*``) and ranges of each transform; ``enabled`` switches all off."""

    enabled: bool = True
    p_flip: float = 0.5
    p_rotate: float = 0.5
    max_rotate_deg: float = 12.0
    p_depth: float = 0.4
    depth_scale: tuple[float, float] = (0.8, 1.25)
    p_shift: float = 0.4
    max_shift: float = 0.06
    p_gain: float = 0.8
    gain: tuple[float, float] = (0.7, 1.4)
    p_gamma: float = 0.5
    gamma: tuple[float, float] = (0.7, 1.45)
    p_dynamic_range: float = 0.5
    dynamic_range: tuple[float, float] = (0.75, 1.35)
    p_speckle: float = 0.3
    speckle: tuple[float, float] = (0.1, 0.35)
    p_blur: float = 0.25
    blur_sigma: tuple[float, float] = (0.4, 1.4)
    p_noise: float = 0.3
    noise_sigma: tuple[float, float] = (2.0, 8.0)
    # Off by default: a zero probability draws nothing, so older configs keep
    # their exact random sequence (and weights).
    p_aspect: float = 0.0
    aspect: tuple[float, float] = (0.8, 1.25)
    # Label-safe zoom (off by default, draws nothing when off): a window 1/z of the
    # content box, log-uniform z, placed so that every lesion pixel stays in view.
    p_zoom: float = 0.0
    zoom: tuple[float, float] = (1.2, 2.0)


def full_box(image: np.ndarray) -> Box:
    return (0, 0, int(image.shape[0]), int(image.shape[1]))


def _apex(box: Box) -> tuple[float, float]:
    """Fan apex (probe on the fontanelle): top centre of the content."""
    top, left, _h, w = box
    return left + (w - 1) / 2.0, float(top)


def _uniform(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    return float(rng.uniform(lo_hi[0], lo_hi[1]))


# -- geometric: 3x3 homogeneous matrices ---------------------------------------------------


def flip_matrix(box: Box) -> np.ndarray:
    cx = _apex(box)[0]
    return np.array([[-1.0, 0.0, 2.0 * cx], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def rotation_matrix(rng: np.random.Generator, max_deg: float, box: Box) -> np.ndarray:
    """Small rotation about the apex: the probe tilts on the fontanelle."""
    angle = float(rng.uniform(-max_deg, max_deg))
    m = cv2.getRotationMatrix2D(_apex(box), angle, 1.0)
    return np.vstack([m, [0.0, 0.0, 1.0]])


def depth_matrix(rng: np.random.Generator, scale: tuple[float, float], box: Box) -> np.ndarray:
    """Scale about the apex: a shallower (>1) or deeper (<1) display depth setting.

    Zooming in pushes the deep part out of the bottom of the content box;
    zooming out leaves black below the fan, as a deeper setting would.
    """
    s = math.exp(rng.uniform(math.log(scale[0]), math.log(scale[1])))
    m = cv2.getRotationMatrix2D(_apex(box), 0.0, s)
    return np.vstack([m, [0.0, 0.0, 1.0]])


def aspect_matrix(rng: np.random.Generator, scale: tuple[float, float], box: Box) -> np.ndarray:
    """Scale height only about the apex: a region of another aspect ratio under a stretch fit."""
    a = math.exp(rng.uniform(math.log(scale[0]), math.log(scale[1])))
    apex_y = _apex(box)[1]
    return np.array([[1.0, 0.0, 0.0], [0.0, a, apex_y * (1.0 - a)], [0.0, 0.0, 1.0]])


def unstretch_box(box: Box, stretch: float) -> Box:
    """The content box in unstretched coordinates (rows divided by ``stretch``)."""
    top, left, h, w = box
    return (top / stretch, left, h / stretch, w)  # type: ignore[return-value]


def shift_matrix(rng: np.random.Generator, max_shift: float, box: Box) -> np.ndarray:
    """Translation by up to ``max_shift`` of the content size: a loose region crop."""
    _top, _left, h, w = box
    dx = rng.uniform(-max_shift, max_shift) * w
    dy = rng.uniform(-max_shift, max_shift) * h
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def _mask_box(mask: Mask, matrix: np.ndarray) -> tuple[float, float, float, float] | None:
    """Bounding box (x0, y0, x1, y1) of the mask's pixels after ``matrix``; None if empty."""
    if mask is None:
        return None
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    x0, x1, y0, y1 = xs.min() - 2.0, xs.max() + 2.0, ys.min() - 2.0, ys.max() + 2.0
    corners = np.array([[x0, y0, 1.0], [x1, y0, 1.0], [x0, y1, 1.0], [x1, y1, 1.0]]).T
    out = (np.asarray(matrix, dtype=np.float64) @ corners)[:2]
    return float(out[0].min()), float(out[1].min()), float(out[0].max()), float(out[1].max())


def zoom_matrix(
    z: float, u: float, v: float, box: Box, keep: tuple[float, float, float, float] | None
) -> np.ndarray | None:
    """Magnify a window 1/``z`` of ``box`` to fill it; ``keep`` (x0, y0, x1, y1) stays inside.

    ``u``, ``v`` in [0, 1) place the window among the positions that contain ``keep``;
    ``z`` shrinks until ``keep`` (its part inside ``box``) fits. None when no zoom
    above 1 fits (the lesion already fills the box) or ``keep`` lies wholly outside it.
    """
    top, left, bh, bw = box
    lo_x, lo_y, hi_x, hi_y = float(left), float(top), float(left + bw), float(top + bh)
    if keep is not None:
        kx0, ky0 = max(keep[0], lo_x), max(keep[1], lo_y)
        kx1, ky1 = min(keep[2], hi_x), min(keep[3], hi_y)
        if kx1 <= kx0 or ky1 <= ky0:
            return None
        z = min(z, bw / (kx1 - kx0), bh / (ky1 - ky0))
    if z <= 1.0 + 1e-3:
        return None
    ww, wh = bw / z, bh / z
    x_min, x_max, y_min, y_max = lo_x, hi_x - ww, lo_y, hi_y - wh
    if keep is not None:
        x_min, x_max = max(x_min, kx1 - ww), min(x_max, kx0)
        y_min, y_max = max(y_min, ky1 - wh), min(y_max, ky0)
    wx = x_min + u * max(x_max - x_min, 0.0)
    wy = y_min + v * max(y_max - y_min, 0.0)
    return np.array([[z, 0.0, lo_x - z * wx], [0.0, z, lo_y - z * wy], [0.0, 0.0, 1.0]])


def warp(image: np.ndarray, mask: Mask, matrix: np.ndarray, box: Box) -> Pair:
    """Apply one affine to image and mask; everything outside ``box`` becomes 0."""
    h, w = image.shape[:2]
    m = np.asarray(matrix, dtype=np.float64)[:2]
    out = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
    out_mask = None
    if mask is not None:
        out_mask = cv2.warpAffine(mask, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
    top, left, bh, bw = box
    if (top, left, bh, bw) != (0, 0, h, w):
        keep = np.zeros((h, w), dtype=bool)
        keep[top : top + bh, left : left + bw] = True
        out[~keep] = 0
        if out_mask is not None:
            out_mask[~keep] = 0
    return out, out_mask


def flip(image: np.ndarray, mask: Mask, box: Box | None = None) -> Pair:
    """Horizontal flip about the content centre (left/right hemispheres swap)."""
    box = box or full_box(image)
    return warp(image, mask, flip_matrix(box), box)


def rotate(
    image: np.ndarray, mask: Mask, rng: np.random.Generator, max_deg: float, box: Box | None = None
) -> Pair:
    box = box or full_box(image)
    return warp(image, mask, rotation_matrix(rng, max_deg, box), box)


def depth(
    image: np.ndarray,
    mask: Mask,
    rng: np.random.Generator,
    scale: tuple[float, float],
    box: Box | None = None,
) -> Pair:
    box = box or full_box(image)
    return warp(image, mask, depth_matrix(rng, scale, box), box)


def shift(
    image: np.ndarray,
    mask: Mask,
    rng: np.random.Generator,
    max_shift: float,
    box: Box | None = None,
) -> Pair:
    box = box or full_box(image)
    return warp(image, mask, shift_matrix(rng, max_shift, box), box)


# -- intensity: lookup tables on [0, 1] --------------------------------------------------

_LEVELS = np.arange(256, dtype=np.float64) / 255.0


def gain_curve(rng: np.random.Generator, gain: tuple[float, float]) -> np.ndarray:
    return _LEVELS * _uniform(rng, gain)


def gamma_curve(rng: np.random.Generator, gamma: tuple[float, float]) -> np.ndarray:
    return _LEVELS ** _uniform(rng, gamma)


def dynamic_range_curve(rng: np.random.Generator, factor: tuple[float, float]) -> np.ndarray:
    """Log-compressed display: a dynamic range DR shown as DR' scales gray about white.

    gray' = 1 + (gray - 1) * DR / DR'; factor = DR / DR' (> 1: narrower, more contrast).
    """
    return 1.0 + (_LEVELS - 1.0) * _uniform(rng, factor)


def to_lut(curve: np.ndarray) -> np.ndarray:
    lut = np.clip(np.rint(curve * 255.0), 0, 255).astype(np.uint8)
    lut[0] = 0  # exact black stays black (padding, outside the sector)
    return lut


def apply_curves(image: np.ndarray, *curves: np.ndarray) -> np.ndarray:
    """Compose curves (each a function sampled on the 256 levels) and apply as one LUT."""
    levels = _LEVELS.copy()
    for curve in curves:
        levels = np.interp(np.clip(levels, 0.0, 1.0), _LEVELS, curve)
    return cv2.LUT(image, to_lut(levels))


def gain(image: np.ndarray, rng: np.random.Generator, span: tuple[float, float]) -> np.ndarray:
    return apply_curves(image, gain_curve(rng, span))


def gamma(image: np.ndarray, rng: np.random.Generator, span: tuple[float, float]) -> np.ndarray:
    return apply_curves(image, gamma_curve(rng, span))


def dynamic_range(
    image: np.ndarray, rng: np.random.Generator, span: tuple[float, float]
) -> np.ndarray:
    return apply_curves(image, dynamic_range_curve(rng, span))


# -- noise and blur ------------------------------------------------------------------------


def speckle(
    image: np.ndarray, rng: np.random.Generator, strength: tuple[float, float]
) -> np.ndarray:
    """Multiplicative Rayleigh speckle with mean 1 and SD ``strength``, 2-pixel grain."""
    h, w = image.shape[:2]
    s = _uniform(rng, strength)
    small = rng.rayleigh(1.0, size=((h + 1) // 2, (w + 1) // 2)).astype(np.float32)
    # Rayleigh(1): mean sqrt(pi/2), SD sqrt((4 - pi) / 2). Normalise to mean 1; the 2x
    # bilinear upsampling keeps 0.625 of the SD (weights 3/4, 1/4 per axis), so undo that.
    small = 1.0 + (s / 0.625) * (small - 1.2533141) / 0.6551364
    field = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    out = image.astype(np.float32) * np.maximum(field, 0.0)
    return np.clip(out, 0, 255).astype(np.uint8)


def blur(
    image: np.ndarray, rng: np.random.Generator, sigma: tuple[float, float], box: Box | None = None
) -> np.ndarray:
    """Gaussian blur (a softer probe / lower frequency) inside the content box only."""
    top, left, h, w = box or full_box(image)
    out = image.copy()
    region = out[top : top + h, left : left + w]
    out[top : top + h, left : left + w] = cv2.GaussianBlur(region, (0, 0), _uniform(rng, sigma))
    return out


def add_noise(
    image: np.ndarray, rng: np.random.Generator, sigma: tuple[float, float], box: Box | None = None
) -> np.ndarray:
    """Additive Gaussian noise (capture noise) inside the content box only."""
    top, left, h, w = box or full_box(image)
    out = image.copy()
    region = out[top : top + h, left : left + w].astype(np.float32)
    region += rng.normal(0.0, _uniform(rng, sigma), size=region.shape).astype(np.float32)
    out[top : top + h, left : left + w] = np.clip(region, 0, 255).astype(np.uint8)
    return out


# -- pipeline ------------------------------------------------------------------------------


class Augmenter:
    """Config-driven random pipeline: ``augmenter(image, mask, box, rng) -> (image, mask)``.

    ``image`` is uint8 (H, W); ``mask`` uint8 (H, W) (0-255 coverage) or None;
    ``box`` the letterbox content box (top, left, h, w). ``may_zoom`` False (a
    frame graded as showing a lesion that its mask does not mark) skips the zoom,
    which is label-safe only when every lesion pixel is known. ``stretch`` is how
    much taller than true proportions the image is (rows per column of the
    region, over 1; a "stretch" fit): the geometric transforms are built in true
    proportions and then stretched, so a rotation stays a rotation of the
    anatomy. Inputs are not modified.
    """

    def __init__(self, config: AugmentConfig | None = None) -> None:
        self.config = config or AugmentConfig()

    def __call__(
        self,
        image: np.ndarray,
        mask: Mask,
        box: Box | None,
        rng: np.random.Generator,
        stretch: float = 1.0,
        may_zoom: bool = True,
    ) -> Pair:
        c = self.config
        if not c.enabled:
            return image, mask
        box = box or full_box(image)
        true_box = box if stretch == 1.0 else unstretch_box(box, stretch)
        matrix = np.eye(3)
        if rng.random() < c.p_flip:
            matrix = flip_matrix(true_box) @ matrix
        if rng.random() < c.p_depth:
            matrix = depth_matrix(rng, c.depth_scale, true_box) @ matrix
        if rng.random() < c.p_rotate:
            matrix = rotation_matrix(rng, c.max_rotate_deg, true_box) @ matrix
        if rng.random() < c.p_shift:
            matrix = shift_matrix(rng, c.max_shift, true_box) @ matrix
        if c.p_aspect > 0.0 and rng.random() < c.p_aspect:
            matrix = aspect_matrix(rng, c.aspect, true_box) @ matrix
        if stretch != 1.0:
            s = np.diag([1.0, stretch, 1.0])
            matrix = s @ matrix @ np.diag([1.0, 1.0 / stretch, 1.0])
        if c.p_zoom > 0.0 and rng.random() < c.p_zoom:
            z = math.exp(rng.uniform(math.log(c.zoom[0]), math.log(c.zoom[1])))
            u, v = float(rng.random()), float(rng.random())
            zm = zoom_matrix(z, u, v, box, _mask_box(mask, matrix)) if may_zoom else None
            if zm is not None:
                matrix = zm @ matrix
        if not np.array_equal(matrix, np.eye(3)):
            image, mask = warp(image, mask, matrix, box)
        curves = []
        if rng.random() < c.p_gain:
            curves.append(gain_curve(rng, c.gain))
        if rng.random() < c.p_gamma:
            curves.append(gamma_curve(rng, c.gamma))
        if rng.random() < c.p_dynamic_range:
            curves.append(dynamic_range_curve(rng, c.dynamic_range))
        if curves:
            image = apply_curves(image, *curves)
        if rng.random() < c.p_speckle:
            image = speckle(image, rng, c.speckle)
        if rng.random() < c.p_blur:
            image = blur(image, rng, c.blur_sigma, box)
        if rng.random() < c.p_noise:
            image = add_noise(image, rng, c.noise_sigma, box)
        return image, mask
