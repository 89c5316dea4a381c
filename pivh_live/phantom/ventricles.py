"""Lateral ventricle geometry: C-shaped centerlines with slit or ballooned sections.

Coordinates are mm in the head frame: x towards the patient's left, y towards
the back, z down from the anterior fontanelle (the probe sits at the origin).
Each ventricle is a chain of oriented ellipsoid sections along a smoothed
centerline (frontal horn -> body -> atrium -> occipital horn, with the
temporal horn branching down from the atrium). Section half-widths across
the slit follow the anterior horn width (AHW): 1-3 mm normal, 7-20 mm for a
dilated grade III ventricle.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

# Left-side control points (x, y, z) of a ~30 week head before scaling.
_MAIN = np.array(
    [
        [6.5, -21.0, 27.0],
        [8.0, -13.0, 26.5],
        [9.5, -4.0, 26.0],
        [11.0, 6.0, 25.0],
        [13.0, 15.0, 26.5],
        [15.5, 23.0, 31.0],
        [15.0, 31.0, 34.0],
        [13.0, 39.0, 35.0],
    ]
)
_TEMPORAL = np.array(
    [[15.5, 23.0, 31.0], [18.5, 22.0, 38.0], [21.0, 15.0, 45.0], [22.0, 7.0, 49.0]]
)
# Part of each main control point: 0 frontal, 1 body, 2 atrium, 3 occipital.
_MAIN_PART = np.array([0, 0, 0, 1, 1, 2, 3, 3])
_HALF_LONG = np.array([2.5, 5.5, 6.0, 6.5, 6.5, 7.0, 5.0, 2.5])
_TEMPORAL_HALF_LONG = np.array([4.0, 3.0, 2.5, 1.5])


@dataclass(frozen=True)
class VentricleSections:
    """Sampled sections of one lateral ventricle (arrays share the first axis)."""

    side: int  # +1 left hemisphere (x > 0), -1 right
    center: np.ndarray  # (N, 3)
    tangent: np.ndarray  # (N, 3)
    long_dir: np.ndarray  # (N, 3) long axis of the cross-section
    half_long: np.ndarray  # (N,)
    half_thin: np.ndarray  # (N,)
    part: np.ndarray  # (N,) 0 frontal, 1 body, 2 atrium, 3 occipital, 4 temporal
    groove: np.ndarray  # (3,) caudothalamic groove (germinal matrix) point
    groove_index: int  # first main section behind the groove

    @property
    def ahw_mm(self) -> float:
        """Anterior horn width: twice the largest frontal half-width."""
        return float(2.0 * self.half_thin[self.part == 0].max())


def _resample(points: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Points every ``step`` mm along a polyline, lightly smoothed; also their parameter."""
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    t = np.arange(0.0, s[-1] + 1e-6, step)
    out = np.stack([np.interp(t, s, points[:, k]) for k in range(3)], axis=1)
    if len(out) > 5:
        k = np.array([1.0, 2.0, 3.0, 2.0, 1.0]) / 9.0
        padded = np.concatenate([out[:1].repeat(2, 0), out, out[-1:].repeat(2, 0)])
        out = np.stack([np.convolve(padded[:, j], k, mode="valid") for j in range(3)], axis=1)
    u = np.interp(t, s, np.arange(len(points), dtype=float))
    return out, u


def _tangents(c: np.ndarray) -> np.ndarray:
    t = np.gradient(c, axis=0)
    return t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-6)


def build_sections(
    rng: np.random.Generator,
    side: int,
    scale: float,
    dz: float,
    ahw_mm: float,
    atrium_mm: float,
    occipital_mm: float,
    dilated: bool,
    step: float = 1.1,
) -> VentricleSections:
    """Sample one ventricle. ``ahw_mm`` sets the frontal/body width; ``dilated`` balloons it."""
    jitter = rng.normal(0.0, 0.8, _MAIN.shape)
    main = (_MAIN + jitter) * scale
    temporal = (_TEMPORAL + rng.normal(0.0, 0.8, _TEMPORAL.shape)) * scale
    temporal[0] = main[5]
    main[:, 2] += dz
    temporal[:, 2] += dz
    w_f = ahw_mm / 2.0
    w_b = w_f * rng.uniform(1.0, 1.5)
    w_a = max(atrium_mm / 2.0, w_b * rng.uniform(1.0, 1.3))
    w_o = max(occipital_mm / 2.0, w_b * rng.uniform(0.8, 1.2)) if dilated else occipital_mm / 2.0
    thin_main = np.array([0.4, w_f * 0.9, w_f, w_b, w_b * 1.1, w_a, w_o, 0.5])
    if dilated:
        thin_main[0] = w_f * 0.6
        thin_main[-1] = w_o * 0.5
    long_main = _HALF_LONG * scale * rng.uniform(0.85, 1.15)
    thin_temp = np.array([w_a, 0.8, 0.6, 0.4]) * (2.0 if dilated else 1.0)
    long_temp = _TEMPORAL_HALF_LONG * scale
    if dilated:
        long_main = np.maximum(long_main * rng.uniform(1.05, 1.3), thin_main * 1.15)
        long_temp = np.maximum(long_temp, thin_temp * 1.1)

    parts, centers, thins, longs = [], [], [], []
    for pts, thin, lng, part_of in (
        (main, thin_main, long_main, _MAIN_PART),
        (temporal, thin_temp, long_temp, np.full(4, 4)),
    ):
        c, u = _resample(pts, step)
        idx = np.arange(len(pts), dtype=float)
        thins.append(np.interp(u, idx, thin))
        longs.append(np.interp(u, idx, lng))
        parts.append(part_of[np.clip(np.rint(u).astype(int), 0, len(pts) - 1)])
        centers.append(c)
    n_main = len(centers[0])
    center = np.concatenate(centers)
    center[:, 0] *= side
    tangent = np.concatenate([_tangents(centers[0]), _tangents(centers[1])])
    tangent[:, 0] *= side
    part = np.concatenate(parts)
    # Slit orientation: frontal/body sections lie obliquely under the corpus
    # callosum (lateral end lower, "/ \" on coronal views); atrium and
    # occipital horn stand more upright; the temporal horn lies flat.
    beta = np.deg2rad(np.where(part <= 1, rng.uniform(28, 42), np.where(part == 4, 12.0, 62.0)))
    long_dir = np.stack([side * np.cos(beta), np.zeros_like(beta), np.sin(beta)], axis=1)
    long_dir -= tangent * np.sum(long_dir * tangent, axis=1, keepdims=True)
    long_dir /= np.maximum(np.linalg.norm(long_dir, axis=1, keepdims=True), 1e-6)

    y_groove = rng.uniform(-1.5, 3.0) * scale
    main_y = center[:n_main, 1]
    gi = int(np.argmax(main_y >= y_groove))
    gi = max(gi, 1)
    half_long = np.concatenate(longs)
    half_thin = np.concatenate(thins)
    groove = center[gi] + long_dir[gi] * half_long[gi] * 0.55 + np.array([0.0, 0.0, 1.5])
    return VentricleSections(
        side=side,
        center=center.astype(np.float32),
        tangent=tangent.astype(np.float32),
        long_dir=long_dir.astype(np.float32),
        half_long=half_long.astype(np.float32),
        half_thin=half_thin.astype(np.float32),
        part=part.astype(np.int8),
        groove=groove.astype(np.float32),
        groove_index=gi,
    )


def widen(sec: VentricleSections, mask: np.ndarray, half_thin: float) -> VentricleSections:
    """Copy with sections under ``mask`` widened to at least ``half_thin`` (clot distension)."""
    thin = sec.half_thin.copy()
    thin[mask] = np.maximum(thin[mask], half_thin)
    return replace(sec, half_thin=thin)
