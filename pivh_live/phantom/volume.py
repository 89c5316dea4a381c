"""Voxel grid helpers: smooth noise, oriented-ellipsoid distance splats, sampling.

The head is built once per case as a few float volumes on a regular grid
(about 0.65 mm voxels) and then sampled along every frame's beams. Shapes are
unions of oriented ellipsoids stored as approximate signed distances in mm,
so thin structures (slit ventricles, fissures) get a proper partial-volume
edge and can be perturbed by smooth noise to look irregular.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BIG_MM = 60.0


@dataclass(frozen=True)
class Grid:
    """Regular voxel grid; voxel (i, j, k) centre is origin + spacing * (i, j, k)."""

    origin: tuple[float, float, float]
    spacing: float
    shape: tuple[int, int, int]

    @classmethod
    def covering(cls, lo: np.ndarray, hi: np.ndarray, spacing: float) -> Grid:
        shape = tuple(int(np.ceil((b - a) / spacing)) + 1 for a, b in zip(lo, hi, strict=True))
        return cls(tuple(float(v) for v in lo), float(spacing), shape)  # type: ignore[arg-type]

    def axis(self, k: int) -> np.ndarray:
        return (self.origin[k] + self.spacing * np.arange(self.shape[k])).astype(np.float32)

    def box(self, lo: np.ndarray, hi: np.ndarray) -> tuple[slice, slice, slice] | None:
        """Index slices of the voxels inside [lo, hi] (mm), or None when empty."""
        out = []
        for k in range(3):
            a = int(np.floor((lo[k] - self.origin[k]) / self.spacing))
            b = int(np.ceil((hi[k] - self.origin[k]) / self.spacing)) + 1
            a, b = max(a, 0), min(b, self.shape[k])
            if a >= b:
                return None
            out.append(slice(a, b))
        return out[0], out[1], out[2]

    def coords(self, sl: tuple[slice, slice, slice]) -> tuple[np.ndarray, ...]:
        """Broadcastable x, y, z coordinate arrays (mm) of a box."""
        x = self.axis(0)[sl[0]][:, None, None]
        y = self.axis(1)[sl[1]][None, :, None]
        z = self.axis(2)[sl[2]][None, None, :]
        return x, y, z

    def empty(self, fill: float = BIG_MM) -> np.ndarray:
        return np.full(self.shape, fill, dtype=np.float32)


def _bspline_matrix(n_out: int, n_in: int) -> np.ndarray:
    """Cubic B-spline interpolation weights mapping n_in lattice values to n_out samples."""
    u = np.linspace(1.0, n_in - 2.0 - 1e-6, n_out)
    i = np.floor(u).astype(int)
    t = u - i
    w = np.stack(
        [
            (1 - t) ** 3 / 6,
            (3 * t**3 - 6 * t**2 + 4) / 6,
            (-3 * t**3 + 3 * t**2 + 3 * t + 1) / 6,
            t**3 / 6,
        ],
        axis=1,
    )
    m = np.zeros((n_out, n_in), dtype=np.float32)
    for j in range(4):
        np.add.at(m, (np.arange(n_out), np.clip(i - 1 + j, 0, n_in - 1)), w[:, j])
    return m


def smooth_noise(
    rng: np.random.Generator, shape: tuple[int, ...], cells: tuple[int, ...]
) -> np.ndarray:
    """Smooth random field of unit standard deviation.

    ``cells`` is the number of independent lattice cells along each axis; the
    correlation length is about extent / cells. Works for 2D and 3D shapes.
    """
    lattice = rng.standard_normal(tuple(c + 3 for c in cells)).astype(np.float32)
    out = lattice
    for axis, n in enumerate(shape):
        m = _bspline_matrix(n, lattice.shape[axis])
        out = np.moveaxis(np.tensordot(m, np.moveaxis(out, axis, 0), axes=(1, 0)), 0, axis)
    out = out - out.mean()
    return (out / max(float(out.std()), 1e-6)).astype(np.float32)


def rotation(axis_a: np.ndarray, axis_b_hint: np.ndarray) -> np.ndarray:
    """Orthonormal 3x3 matrix whose columns are a, b (closest to hint, orthogonal to a), a x b."""
    a = np.asarray(axis_a, dtype=np.float64)
    a = a / np.linalg.norm(a)
    b = np.asarray(axis_b_hint, dtype=np.float64)
    b = b - a * float(a @ b)
    nb = np.linalg.norm(b)
    if nb < 1e-6:
        b = np.cross(a, [1.0, 0.0, 0.0] if abs(a[0]) < 0.9 else [0.0, 1.0, 0.0])
        nb = np.linalg.norm(b)
    b = b / nb
    return np.stack([a, b, np.cross(a, b)], axis=1)


def ellipsoid_distance(
    grid: Grid,
    center: np.ndarray,
    axes: np.ndarray,
    rot: np.ndarray | None = None,
    margin: float = 2.0,
) -> tuple[tuple[slice, slice, slice], np.ndarray] | None:
    """Approximate signed distance (mm) to an oriented ellipsoid inside its bounding box.

    ``rot`` columns are the ellipsoid's axis directions (identity if None).
    Distance uses the first-order estimate (sqrt(q) - 1) / |grad sqrt(q)|,
    exact on the surface and well behaved inside, so partial-volume edges
    are about one voxel wide for thick and thin shapes alike.
    """
    center = np.asarray(center, dtype=np.float32)
    axes = np.maximum(np.asarray(axes, dtype=np.float32), 0.15)
    r = float(axes.max()) + margin
    sl = grid.box(center - r, center + r)
    if sl is None:
        return None
    x, y, z = grid.coords(sl)
    dx, dy, dz = x - center[0], y - center[1], z - center[2]
    if rot is None:
        loc = (dx, dy, dz)
    else:
        rot = np.asarray(rot, dtype=np.float32)
        loc = tuple(dx * rot[0, k] + dy * rot[1, k] + dz * rot[2, k] for k in range(3))
    q = (loc[0] / axes[0]) ** 2 + (loc[1] / axes[1]) ** 2 + (loc[2] / axes[2]) ** 2
    g = np.sqrt(
        (loc[0] / axes[0] ** 2) ** 2 + (loc[1] / axes[1] ** 2) ** 2 + (loc[2] / axes[2] ** 2) ** 2
    )
    sq = np.sqrt(q)
    return sl, ((sq - 1.0) * sq / np.maximum(g, 1e-6)).astype(np.float32)


def splat_ellipsoid(
    grid: Grid,
    dist: np.ndarray,
    center: np.ndarray,
    axes: np.ndarray,
    rot: np.ndarray | None = None,
    margin: float = 2.0,
) -> None:
    """Union an oriented ellipsoid into the signed-distance volume ``dist`` (in place)."""
    res = ellipsoid_distance(grid, center, axes, rot, margin)
    if res is not None:
        sl, d = res
        view = dist[sl]
        np.minimum(view, d, out=view)


def paint_ellipsoid(
    amp: np.ndarray,
    grid: Grid,
    center: np.ndarray,
    axes: np.ndarray,
    value: float,
    rot: np.ndarray | None = None,
    soft: float | None = None,
    within: np.ndarray | None = None,
) -> None:
    """Paint one ellipsoid of backscatter ``value`` into ``amp`` (in place, box only).

    ``within`` (an occupancy volume) limits the paint, e.g. to the brain.
    """
    soft = grid.spacing if soft is None else soft
    res = ellipsoid_distance(grid, center, axes, rot, margin=soft + 1.0)
    if res is not None:
        sl, d = res
        occ = occupancy(d, soft)
        if within is not None:
            occ *= within[sl]
        view = amp[sl]
        view += (value - view) * occ


def occupancy(dist: np.ndarray, soft_mm: float) -> np.ndarray:
    """Fraction of a voxel inside the shape from its signed distance (linear ramp)."""
    return np.clip(0.5 - dist / soft_mm, 0.0, 1.0).astype(np.float32)


def paint(amp: np.ndarray, occ: np.ndarray, value: np.ndarray | float) -> None:
    """Overwrite ``amp`` with ``value`` in proportion to the occupancy (in place)."""
    amp += (value - amp) * occ


def max_filter3(vol: np.ndarray) -> np.ndarray:
    """3x3x3 maximum filter by shifted maxima (labels grown by one voxel)."""
    out = vol.copy()
    for axis in range(3):
        src = out.copy()
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis], hi[axis] = slice(0, -1), slice(1, None)
        np.maximum(out[tuple(lo)], src[tuple(hi)], out=out[tuple(lo)])
        np.maximum(out[tuple(hi)], src[tuple(lo)], out=out[tuple(hi)])
    return out


def _cell_index(
    grid: Grid, pts: np.ndarray, rounding: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat voxel index, fractional offsets (3, N) and inside flags of points (N, 3)."""
    f = (pts.reshape(-1, 3) - np.asarray(grid.origin, dtype=np.float32)) * np.float32(
        1.0 / grid.spacing
    )
    f = f.T
    i = np.rint(f) if rounding else np.floor(f)
    frac = f - i
    i = i.astype(np.int32)
    nx, ny, nz = grid.shape
    hi = (nx, ny, nz) if rounding else (nx - 1, ny - 1, nz - 1)
    inside = (
        (i[0] >= 0) & (i[0] < hi[0]) & (i[1] >= 0) & (i[1] < hi[1]) & (i[2] >= 0) & (i[2] < hi[2])
    )
    flat = (i[0] * ny + i[1]) * nz + i[2]
    flat[~inside] = 0
    return flat, frac, inside


def sample_trilinear(vol: np.ndarray, grid: Grid, pts: np.ndarray) -> np.ndarray:
    """Sample a float32 (nx, ny, nz) volume at points (..., 3) in mm; outside gives 0."""
    flat, t, inside = _cell_index(grid, pts, rounding=False)
    v = vol.reshape(-1)
    sy, sx = grid.shape[2], grid.shape[1] * grid.shape[2]
    tx, ty, tz = t[0], t[1], t[2]

    def lerp_z(base: np.ndarray) -> np.ndarray:
        a = np.take(v, base)
        return a + (np.take(v, base + 1) - a) * tz

    c0 = lerp_z(flat)
    c0 += (lerp_z(flat + sy) - c0) * ty
    c1 = lerp_z(flat + sx)
    c1 += (lerp_z(flat + sx + sy) - c1) * ty
    out = c0 + (c1 - c0) * tx
    out[~inside] = 0.0
    return out.reshape(pts.shape[:-1])


def sample_nearest(vol: np.ndarray, grid: Grid, pts: np.ndarray) -> np.ndarray:
    """Sample an integer (nx, ny, nz) volume at points (..., 3) in mm; outside gives 0."""
    flat, _, inside = _cell_index(grid, pts, rounding=True)
    out = np.take(vol.reshape(-1), flat)
    out[~inside] = 0
    return out.reshape(pts.shape[:-1])
