"""Normal anatomy of a ~28-32 week head as a relative-backscatter volume.

Structures are painted in order onto the grid (later ones overwrite earlier
ones in proportion to their occupancy): scalp, skull with the anterior
fontanelle gap, extra-axial CSF, parenchyma (white matter, cortex), cortical
and medial sulci, Sylvian fissures, interhemispheric fissure, corpus
callosum, caudate heads, thalami and the caudothalamic groove, posterior
fossa, skull base. Ventricles, choroid plexus and lesions are painted later
by :mod:`pivh_live.phantom.head`. Relative backscatter follows the recipe:
CSF 0.02, grey matter ~1, choroid/clot/fissures 2.5-4, bone 6-10.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pivh_live.phantom.volume import (
    Grid,
    occupancy,
    paint,
    paint_ellipsoid,
    rotation,
    sample_trilinear,
    smooth_noise,
)


@dataclass(frozen=True)
class HeadShape:
    """Outer geometry of one head (mm)."""

    scale: float  # 1.0 ~ 30 weeks
    ga_weeks: float
    center: np.ndarray  # brain ellipsoid centre
    axes: np.ndarray  # brain ellipsoid half-axes
    extra_axial: float  # CSF between brain and skull
    bone: float
    scalp: float
    fontanelle_r: float
    dz: float  # depth shift of inner structures (thicker coverings push them down)


def sample_shape(rng: np.random.Generator, ga_weeks: float) -> HeadShape:
    scale = (0.9 + 0.03 * (ga_weeks - 28.0)) * rng.uniform(0.96, 1.04)
    axes = np.array([34.0, 47.0, 36.0]) * scale * rng.uniform(0.96, 1.04, 3)
    extra, bone, scalp = rng.uniform(1.0, 3.5), rng.uniform(1.0, 2.2), rng.uniform(1.5, 3.0)
    cover = extra + bone + scalp
    yc = 10.0 * scale
    outer = axes + cover
    zc = outer[2] * np.sqrt(max(1.0 - (yc / outer[1]) ** 2, 0.5))
    return HeadShape(
        scale=float(scale),
        ga_weeks=float(ga_weeks),
        center=np.array([0.0, yc, zc], dtype=np.float32),
        axes=axes.astype(np.float32),
        extra_axial=float(extra),
        bone=float(bone),
        scalp=float(scalp),
        fontanelle_r=float(rng.uniform(8.0, 14.0)),
        dz=float(cover - 6.0 + (zc - outer[2]) * 0.0),
    )


def head_grid(shape: HeadShape, spacing: float) -> Grid:
    cover = shape.extra_axial + shape.bone + shape.scalp
    half = shape.axes + cover + 1.5
    lo = shape.center - half
    hi = shape.center + half
    lo[2] = -2.0
    return Grid.covering(lo, hi, spacing)


def brain_distance(grid: Grid, shape: HeadShape, wobble: np.ndarray) -> np.ndarray:
    """Approximate signed distance (mm) to the brain surface, negative inside."""
    x, y, z = grid.coords((slice(None), slice(None), slice(None)))
    a = shape.axes
    c = shape.center
    lx, ly, lz = (x - c[0]) / a[0], (y - c[1]) / a[1], (z - c[2]) / a[2]
    q = lx * lx + ly * ly + lz * lz
    g = np.sqrt((lx / a[0]) ** 2 + (ly / a[1]) ** 2 + (lz / a[2]) ** 2)
    sq = np.sqrt(q)
    d = (sq - 1.0) * sq / np.maximum(g, 1e-6)
    # Flatten the base: the brain rests on the skull base and tentorium.
    # curving up laterally (middle cranial fossae) rather than a flat cut.
    base = c[2] + a[2] * (0.8 - 0.25 * ((x - c[0]) / a[0]) ** 2)
    d = np.maximum(d, z - base).astype(np.float32)
    return d + wobble * 1.2


def _shell(d: np.ndarray, inner: float, outer: float, soft: float) -> np.ndarray:
    return occupancy(d - outer, soft) * occupancy(inner - d, soft)


def paint_coverings(
    amp: np.ndarray, grid: Grid, shape: HeadShape, d: np.ndarray, rng: np.random.Generator
) -> None:
    """Scalp, skull (with the fontanelle gap and a thicker base) and extra-axial CSF."""
    s = grid.spacing
    e, b, sc = shape.extra_axial, shape.bone, shape.scalp
    paint(amp, occupancy(d - (e + b + sc), s), rng.uniform(0.8, 1.3))
    x, y, z = grid.coords((slice(None), slice(None), slice(None)))
    base_t = np.clip((z - shape.center[2]) / (shape.axes[2] * 0.6), 0.0, 1.0) * rng.uniform(
        1.5, 4.0
    )
    bone_occ = _shell(d, e, e + b + base_t, s)
    font = occupancy(np.sqrt(x * x + y * y) - shape.fontanelle_r, 3.0) * (z < 15.0)
    bone_occ *= 1.0 - font
    paint(amp, bone_occ, rng.uniform(6.0, 10.0))
    paint(amp, _shell(d, 0.0, e, s), rng.uniform(0.02, 0.08))


def paint_parenchyma(
    amp: np.ndarray, grid: Grid, shape: HeadShape, d: np.ndarray, rng: np.random.Generator
) -> None:
    """White matter with slow texture, a darker cortical ribbon and cortical sulci."""
    s = grid.spacing
    tex = smooth_noise(rng, grid.shape, tuple(max(3, n // 14) for n in grid.shape))
    wm = rng.uniform(0.95, 1.1) * (1.0 + rng.uniform(0.06, 0.14) * tex)
    inside = occupancy(d, s)
    paint(amp, inside, wm)
    ribbon = _shell(d, -rng.uniform(1.8, 3.0), 0.0, s) * inside
    paint(amp, ribbon, rng.uniform(0.7, 0.9))
    _paint_sulci(amp, grid, shape, d, rng)


def _paint_sulci(
    amp: np.ndarray, grid: Grid, shape: HeadShape, d: np.ndarray, rng: np.random.Generator
) -> None:
    # Sulci are zero sets of a noise field that is constant along rays from
    # the brain centre, so they run perpendicular to the surface. Younger
    # heads (28 w) get fewer, shallower sulci.
    maturity = float(np.clip((shape.ga_weeks - 27.0) / 6.0, 0.1, 1.0))
    band = (d < 0) & (d > -12.0)
    idx = np.nonzero(band)
    x, y, z = (grid.axis(k)[idx[k]] for k in range(3))
    c, a = shape.center, shape.axes
    rel = np.stack([(x - c[0]) / a[0], (y - c[1]) / a[1], (z - c[2]) / a[2]], axis=1)
    unit = rel / np.maximum(np.linalg.norm(rel, axis=1, keepdims=True), 1e-6)
    ngrid = Grid((-1.2, -1.2, -1.2), 0.05, (49, 49, 49))
    cells = int(7 + 10 * maturity)
    noise = smooth_noise(rng, ngrid.shape, (cells, cells, cells))
    depth_n = smooth_noise(rng, ngrid.shape, (4, 4, 4))
    unit = unit.astype(np.float32)
    vals = np.stack(
        [sample_trilinear(noise, ngrid, unit), sample_trilinear(depth_n, ngrid, unit)], 1
    )
    width = 0.05 + 0.06 * maturity
    depth_mm = np.clip(2.0 + 7.0 * maturity + 2.5 * vals[:, 1], 0.5, 11.0)
    dd = -d[idx]
    line = np.clip(1.0 - np.abs(vals[:, 0]) / width, 0.0, 1.0) * np.clip(
        (depth_mm - dd) / 1.5, 0, 1
    )
    occ = np.zeros_like(amp)
    occ[idx] = line * rng.uniform(0.8, 1.0)
    # Medial sulci (cingulate, parieto-occipital, calcarine) radiate on the
    # interhemispheric surface: noise of (y, z) only, within ~10 mm of midline.
    med = smooth_noise(
        rng, grid.shape[1:], tuple(max(3, int(n // (22 - 8 * maturity))) for n in grid.shape[1:])
    )
    xs = np.abs(grid.axis(0))[:, None, None]
    med_line = np.clip(1.0 - np.abs(med)[None] / width, 0, 1) * np.clip(
        (8.0 * maturity + 2 - xs) / 2, 0, 1
    )
    upper = (grid.axis(2)[None, None, :] < c[2] - 0.1 * a[2]) & (d < 0)
    np.maximum(occ, med_line * upper, out=occ)
    paint(amp, occ, rng.uniform(2.4, 3.4))


def paint_fissures(
    amp: np.ndarray, grid: Grid, shape: HeadShape, d: np.ndarray, rng: np.random.Generator
) -> None:
    """Interhemispheric fissure and Sylvian fissures (echogenic)."""
    s, sc, dz = grid.spacing, shape.scale, shape.dz
    x, y, z = grid.coords((slice(None), slice(None), slice(None)))
    wob = smooth_noise(rng, grid.shape[1:], (6, 6))[None] * 0.6
    # Midline fissure reaches down to the corpus callosum over its length and
    # deeper in front of the genu and behind the splenium.
    # Depth reached by the fissure: down to the callosum over its length,
    # deeper in front of the genu and behind the splenium (smoothly).
    yy = y / sc
    cc_top = 18.0 + 0.012 * (yy - 4.0) ** 2
    ramp = np.clip((np.abs(yy - 4.0) - 20.0) / 8.0, 0.0, 1.0)
    limit = (cc_top + (42.0 - cc_top) * ramp) * sc + dz
    half_w = rng.uniform(0.35, 0.8)
    fiss = occupancy(np.abs(x - wob) - half_w, s) * (z < limit) * (d < 0)
    # Patchy along the fissure so an exactly midline slice is not one bright sheet.
    patch = 0.75 + 0.35 * smooth_noise(rng, grid.shape[1:], (10, 10))[None]
    paint(amp, fiss.astype(np.float32), rng.uniform(1.9, 2.8) * patch)
    wide = 0.3 + 1.5 * float(np.clip((31.0 - shape.ga_weeks) / 3.0, 0, 1))  # opercula still open
    for side in (-1, 1):
        z0 = rng.uniform(38, 43) * sc + dz
        xi = rng.uniform(20, 24) * sc
        lateral = np.clip((side * x - xi) / 12.0, 0, 2)
        zf = z0 - lateral * rng.uniform(4, 9) - lateral**2 * rng.uniform(0, 3)
        yr = ((y / sc - 8.0) / rng.uniform(14, 18)) ** 2
        sheet = (
            occupancy(np.abs(z - zf) - (0.4 + wide * 0.3), s) * (side * x > xi) * (yr < 1) * (d < 0)
        )
        ins = occupancy(np.abs(side * x - xi) - 0.45, s) * (np.abs(z - z0 + 1) < 5) * (yr < 0.7)
        paint(amp, np.maximum(sheet, 0.7 * ins).astype(np.float32), rng.uniform(2.2, 3.2))


def paint_deep(
    amp: np.ndarray, grid: Grid, shape: HeadShape, d: np.ndarray, rng: np.random.Generator
) -> None:
    """Corpus callosum, caudate heads, thalami, posterior fossa, skull base."""
    sc, dz = shape.scale, shape.dz
    inside = occupancy(d, grid.spacing)

    def blob(center, axes, value, rot=None):
        c = np.array(center, dtype=np.float32) * sc
        c[2] = center[2] * sc + dz
        paint_ellipsoid(amp, grid, c, np.array(axes) * sc, value, rot, within=inside)

    # Corpus callosum: hypoechoic arch with an echogenic pericallosal line above.
    cc_v = rng.uniform(0.45, 0.65)
    peri = rng.uniform(2.0, 3.0)
    for yy in np.arange(-17.0, 26.0, 2.0):
        zz = 20.0 + 0.0015 * (yy - 4.0) ** 2 * 8
        blob((0, yy, zz - 2.4), (2.5, 1.8, 0.45), peri)
    for yy in np.arange(-17.0, 26.0, 2.0):
        zz = 20.0 + 0.0015 * (yy - 4.0) ** 2 * 8
        thick = 1.4 if -10 < yy < 20 else 2.2
        blob((0, yy, zz), (14.0, 1.6, thick), cc_v, rotation([1, 0, 0], [0, 1, 0]))
    for side in (-1, 1):
        blob((side * 13.5, -9, 31), (5.0, 9.0, 6.0), rng.uniform(0.85, 0.98))
        blob((side * 8.5, 9, 38), (7.5, 10.0, 8.0), rng.uniform(0.82, 0.95))
        blob((side * 20, 2, 40), (4.0, 12.0, 7.0), rng.uniform(0.88, 1.0))  # lentiform
    # Posterior fossa: brainstem, cerebellar hemispheres, echogenic vermis,
    # tentorium and the basal cisterns.
    blob((0, 26, 56), (8.0, 10.0, 12.0), rng.uniform(0.65, 0.85))
    blob((0, 18, 47), (9.0, 6.0, 3.0), rng.uniform(2.2, 3.0))
    for side in (-1, 1):
        blob((side * 14, 46, 61), (13.0, 11.0, 9.0), rng.uniform(0.9, 1.1))
    blob((0, 44, 58), (7.0, 9.0, 9.0), rng.uniform(2.0, 2.8))
    blob((0, 38, 57), (2.0, 2.5, 3.0), 0.05)
    for side in (-1, 1):
        tent = rotation([side * 0.8, 0.3, -0.5], [0, 1, 0])
        blob((side * 12, 42, 50), (14.0, 12.0, 0.7), rng.uniform(2.3, 3.2), tent)
        wing = rotation([side * 1.0, -0.3, 0.25], [0, 1, 0])
        blob((side * 18, -12, 58), (15.0, 1.5, 1.2), rng.uniform(6, 9), wing)
        petrous = rotation([side * 1.0, 0.5, -0.3], [0, 0, 1])
        blob((side * 19, 28, 66), (14.0, 2.0, 2.5), rng.uniform(6, 9), petrous)
