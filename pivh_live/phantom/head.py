"""One case's head: anatomy + ventricles + choroid plexus + lesions as sampled volumes.

``build_head`` is called once per clip; frames then only sample the volumes
along their beams. Besides the backscatter it keeps a lesion-occupancy
volume and a label volume (component grade per voxel), so every frame's mask
and visible grade come from the same geometry that produced its pixels.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from pivh_live.phantom import anatomy
from pivh_live.phantom.lesions import (
    Lesion,
    clot_range,
    place_lesions,
    plan_hemisphere,
    pseudo_target,
)
from pivh_live.phantom.ventricles import VentricleSections, build_sections, widen
from pivh_live.phantom.volume import (
    Grid,
    max_filter3,
    occupancy,
    paint,
    paint_ellipsoid,
    rotation,
    smooth_noise,
    splat_ellipsoid,
)

log = logging.getLogger(__name__)

TRAPS = ("bulky_choroid", "blush", "asymmetric")


@dataclass(frozen=True)
class HeadModel:
    grid: Grid
    amp: np.ndarray  # (nx, ny, nz) float32 relative backscatter
    lesion_occ: np.ndarray  # (nx, ny, nz) float32 lesion-mask occupancy
    code: np.ndarray  # (nx, ny, nz) uint8 component grade, grown by one voxel
    lesions: tuple[Lesion, ...]
    ventricles: tuple[VentricleSections, ...]  # (right, left)
    target: np.ndarray  # (3,) point the sweep is centred on
    clot_fraction: dict[int, float]  # side -> clot share of the lumen (IVH sides)
    shape: anatomy.HeadShape


def _ventricle(
    rng: np.random.Generator, shape: anatomy.HeadShape, side: int, dilated: bool, asym: bool
) -> VentricleSections:
    if dilated:
        ahw = rng.uniform(7.0, 18.0)
    elif asym:
        ahw = rng.uniform(3.8, 5.6)
    else:
        ahw = rng.uniform(1.0, 3.0)
    return build_sections(
        rng, side, shape.scale, shape.dz, ahw,
        atrium_mm=rng.uniform(5.0, 9.0), occipital_mm=rng.uniform(1.5, 4.5), dilated=dilated,
    )  # fmt: skip


def _choroid_lobes(
    rng: np.random.Generator, sec: VentricleSections, bulky: bool
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Choroid plexus along the floor from the groove back to the atrium and temporal horn."""
    glomus = rng.uniform(5.5, 7.5) if bulky else rng.uniform(2.8, 4.8)
    body = rng.uniform(1.1, 2.0)
    lobes = []
    n_main = int(np.sum(sec.part <= 3))
    atr = np.flatnonzero(sec.part == 2)
    a_mid = atr[len(atr) // 2] if len(atr) else n_main - 1
    for i in range(sec.groove_index, len(sec.part)):
        if i >= n_main:  # temporal horn: thin strand
            r = body * 0.7 if i < n_main + 10 else 0.0
        elif i <= a_mid:
            f = (i - sec.groove_index) / max(a_mid - sec.groove_index, 1)
            r = body + (glomus - body) * f**2
            r = min(r, 0.6 + 0.5 * (i - sec.groove_index))  # taper to a point at the groove
        else:
            r = glomus * max(0.0, 1.0 - (i - a_mid) / 5.0)
        if r < 0.4:
            continue
        down = np.array([0.0, 0.0, 1.0], dtype=np.float32)
        down -= sec.tangent[i] * float(down @ sec.tangent[i])
        c = sec.center[i] + down * min(sec.half_thin[i] + sec.half_long[i] * 0.3, 2.5) * 0.5
        rot = rotation(sec.tangent[i], sec.long_dir[i])
        axes = np.array([1.6, r * rng.uniform(1.0, 1.3), r * rng.uniform(0.75, 1.0)])
        lobes.append((c.astype(np.float32), axes.astype(np.float32), rot))
    return lobes


def build_head(
    rng: np.random.Generator,
    grade_left: int,
    grade_right: int,
    traps: frozenset[str] = frozenset(),
    ga_weeks: float = 30.0,
    spacing: float = 0.65,
) -> HeadModel:
    shape = anatomy.sample_shape(rng, ga_weeks)
    grid = anatomy.head_grid(shape, spacing)
    plans = {1: plan_hemisphere(rng, 1, grade_left), -1: plan_hemisphere(rng, -1, grade_right)}
    asym_side = int(rng.choice([-1, 1])) if "asymmetric" in traps else 0
    bulky_sides = {int(rng.choice([-1, 1]))} if rng.random() < 0.5 else {-1, 1}
    secs: dict[int, VentricleSections] = {}
    clots: dict[int, np.ndarray] = {}
    for side in (-1, 1):
        sec = _ventricle(rng, shape, side, plans[side].dilated, side == asym_side)
        where = clot_range(rng, sec, plans[side].ivh_grade or 2)
        if plans[side].ivh_grade == 2:
            sec = widen(sec, where, float(rng.uniform(1.4, 2.7)))
        secs[side], clots[side] = sec, where

    d_brain = anatomy.brain_distance(grid, shape, smooth_noise(rng, grid.shape, (4, 5, 4)))
    amp = np.zeros(grid.shape, dtype=np.float32)
    anatomy.paint_coverings(amp, grid, shape, d_brain, rng)
    anatomy.paint_parenchyma(amp, grid, shape, d_brain, rng)
    anatomy.paint_fissures(amp, grid, shape, d_brain, rng)
    anatomy.paint_deep(amp, grid, shape, d_brain, rng)
    del d_brain
    if "blush" in traps:
        _paint_blush(amp, grid, rng, secs)

    fine = smooth_noise(rng, grid.shape, tuple(max(4, n // 7) for n in grid.shape))
    d_vent = grid.empty()
    choroid = grid.empty()
    # A 1 mm horn is below the resolution of many probes; operators still see
    # the slit, so render at least ~1.5-2 mm (labels do not depend on it).
    min_half = float(rng.uniform(0.75, 1.0))
    for side, sec in secs.items():
        rot_t = [rotation(t, lv) for t, lv in zip(sec.tangent, sec.long_dir, strict=True)]
        for i in range(len(sec.part)):
            thin = max(float(sec.half_thin[i]), min_half) if sec.part[i] <= 2 else sec.half_thin[i]
            axes = np.array([1.5, sec.half_long[i], thin])
            splat_ellipsoid(grid, d_vent, sec.center[i], axes, rot_t[i])
        halo = float(rng.uniform(0.3, 0.8))
        for c, axes, rot in _choroid_lobes(
            rng, sec, "bulky_choroid" in traps and side in bulky_sides
        ):
            splat_ellipsoid(grid, choroid, c, axes, rot)
            splat_ellipsoid(grid, d_vent, c, axes + halo, rot)
    d_vent += fine * rng.uniform(0.1, 0.35)
    lumen = occupancy(d_vent, spacing)
    paint(amp, lumen, rng.uniform(0.01, 0.04))
    sc, dz = shape.scale, shape.dz
    if rng.random() < 0.65:  # cavum septi pellucidi, common in preterms
        csp = np.array([0.0, -8.0 * sc, 24.0 * sc + dz])
        paint_ellipsoid(amp, grid, csp, np.array([rng.uniform(1.0, 3.0), 9 * sc, 3.5 * sc]), 0.03)
    paint_ellipsoid(
        amp, grid, np.array([0.0, 6 * sc, 38 * sc + dz]), np.array([0.9, 8, 6]) * sc, 0.03
    )
    choroid += fine * rng.uniform(0.15, 0.4)
    paint(amp, occupancy(choroid, spacing), rng.uniform(2.5, 4.0) * (1.0 + 0.12 * fine))
    del choroid

    lesion_occ = np.zeros(grid.shape, dtype=np.float32)
    code = np.zeros(grid.shape, dtype=np.uint8)
    x_left = (grid.axis(0) > 0)[:, None, None]
    lesions: list[Lesion] = []
    fractions: dict[int, float] = {}
    for side in (-1, 1):
        side_sel = x_left if side > 0 else ~x_left
        for les in place_lesions(rng, plans[side], secs[side], clots[side]):
            lesions.append(les)
            occ = _paint_lesion(amp, grid, les, d_vent, fine, rng)
            mask = occ
            if les.kind == "ivh":
                side_lumen = lumen * side_sel
                fractions[side] = float(occ.sum() / max(side_lumen.sum(), 1e-6))
                if les.grade == 3:
                    mask = np.maximum(occ, side_lumen)
            np.maximum(lesion_occ, mask, out=lesion_occ)
            np.maximum(code, np.where(mask > 0.25, les.grade, 0).astype(np.uint8), out=code)
    code = max_filter3(code)
    target = _sweep_target(rng, lesions, secs)
    log.debug("head built: grid %s, %d lesions", grid.shape, len(lesions))
    return HeadModel(
        grid, amp, lesion_occ, code, tuple(lesions), (secs[-1], secs[1]), target, fractions, shape
    )


def _paint_lesion(
    amp: np.ndarray,
    grid: Grid,
    les: Lesion,
    d_vent: np.ndarray,
    fine: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    d = grid.empty()
    for lb in les.lobes:
        splat_ellipsoid(grid, d, lb.center, lb.axes, lb.rot)
    d += fine * les.irregular_mm
    if les.in_lumen:
        np.maximum(d, d_vent, out=d)
    occ = occupancy(d, grid.spacing)
    value = les.brightness * (1.0 + 0.12 * fine)
    if les.old:
        centre = occupancy(d + les.rim_mm, 1.2)
        value = value + (les.centre_value - value) * centre
    paint(amp, occ, value)
    return occ


def _paint_blush(
    amp: np.ndarray, grid: Grid, rng: np.random.Generator, secs: dict[int, VentricleSections]
) -> None:
    """Normal periventricular echogenicity near the trigone (a grade-0 trap)."""
    sides = (-1, 1) if rng.random() < 0.7 else (int(rng.choice([-1, 1])),)
    value = rng.uniform(1.4, 1.9)
    for side in sides:
        sec = secs[side]
        atr = np.flatnonzero(sec.part == 2)
        i = int(atr[len(atr) // 2]) if len(atr) else len(sec.part) // 2
        c = sec.center[i] + np.array(
            [side * rng.uniform(3, 7), rng.uniform(0, 5), -rng.uniform(2, 6)]
        )
        axes = rng.uniform([5, 6, 4], [9, 11, 7])
        paint_ellipsoid(amp, grid, c.astype(np.float32), axes, value, soft=3.0)


def _sweep_target(
    rng: np.random.Generator, lesions: list[Lesion], secs: dict[int, VentricleSections]
) -> np.ndarray:
    if lesions:
        worst = max(les.grade for les in lesions)
        cands = [les for les in lesions if les.grade == worst or rng.random() < 0.15]
        les = cands[int(rng.integers(len(cands)))]
        if les.grade == 3:  # a dilated ventricle is long: aim at part of it
            return les.lobes[int(rng.integers(len(les.lobes)))].center
        return les.centroid
    return pseudo_target(rng, secs[int(rng.choice([-1, 1]))])
