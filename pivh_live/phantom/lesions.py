"""Haemorrhage components per hemisphere (Papile grade I-IV) and grade-0 traps.

A hemisphere of exam grade g carries one or more components, each with its
own label grade:

* grade I   -> germinal matrix nodule (label 1) at the caudothalamic groove;
* grade II  -> clot inside a non-dilated ventricle (label 2), often with a
  nodule (label 1);
* grade III -> dilated ventricle more than half filled with clot (label 3;
  its mask is the whole dilated lumen), sometimes with a nodule;
* grade IV  -> periventricular infarct fan (label 4) plus intraventricular
  blood of grade II or III on the same side.

Shapes are unions of a few oriented ellipsoid lobes whose distance field is
perturbed by smooth noise (lobulated, irregular outlines). Age changes the
look: fresh blood is uniformly echogenic (about choroid brightness); older
blood has a bright rim and a hypoechoic or cystic centre.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pivh_live.phantom.ventricles import VentricleSections
from pivh_live.phantom.volume import rotation


@dataclass(frozen=True)
class Lobe:
    center: np.ndarray  # (3,) mm
    axes: np.ndarray  # (3,) half-axes, mm
    rot: np.ndarray  # (3, 3) columns are the axis directions


@dataclass(frozen=True)
class Lesion:
    """One haemorrhage component."""

    kind: str  # "gmh", "ivh" or "infarct"
    side: int  # +1 left hemisphere, -1 right
    grade: int  # label grade of this component, 1-4
    lobes: tuple[Lobe, ...]
    irregular_mm: float  # amplitude of the noise that roughens the outline
    brightness: float  # relative backscatter of fresh blood / rim
    old: bool  # bright rim + darker centre instead of uniform
    rim_mm: float
    centre_value: float  # backscatter of an old lesion's centre
    in_lumen: bool  # clipped to the ventricle lumen (intraventricular blood)

    @property
    def centroid(self) -> np.ndarray:
        w = np.array([float(np.prod(lb.axes)) for lb in self.lobes])
        c = np.stack([lb.center for lb in self.lobes])
        return (c * w[:, None]).sum(0) / w.sum()


@dataclass(frozen=True)
class HemispherePlan:
    """What a hemisphere of a given exam grade needs before its ventricle is built."""

    side: int
    grade: int
    dilated: bool
    ivh_grade: int  # 0, 2 or 3
    gmh: bool
    infarct: bool


def plan_hemisphere(rng: np.random.Generator, side: int, grade: int) -> HemispherePlan:
    ivh = {0: 0, 1: 0, 2: 2, 3: 3, 4: int(rng.choice([2, 3]))}[grade]
    gmh = grade == 1 or (grade == 2 and rng.random() < 0.6) or (grade == 3 and rng.random() < 0.35)
    return HemispherePlan(side, grade, ivh == 3, ivh, gmh, grade == 4)


def _age(rng: np.random.Generator, p_old: float, cyst_ok: bool) -> tuple[bool, float, float]:
    old = bool(rng.random() < p_old)
    rim = float(rng.uniform(0.7, 1.8))
    centre = float(
        rng.uniform(0.05, 0.25) if cyst_ok and rng.random() < 0.35 else rng.uniform(0.3, 0.9)
    )
    return old, rim, centre


def _random_rot(rng: np.random.Generator) -> np.ndarray:
    return rotation(rng.normal(size=3), rng.normal(size=3))


def _nodule(rng: np.random.Generator, sec: VentricleSections) -> Lesion:
    r = float(rng.uniform(1.5, 5.0))  # 3-10 mm diameter
    c = sec.groove + rng.normal(0.0, 0.6, 3).astype(np.float32)
    c[2] += r * 0.35  # sits under the ventricle floor, bulging into it
    lobes = [Lobe(c, r * rng.uniform([0.85, 0.65, 0.55], [1.25, 1.1, 0.95]), _random_rot(rng))]
    for _ in range(int(rng.integers(0, 3))):
        d = rng.normal(size=3)
        d /= np.linalg.norm(d)
        lobes.append(Lobe(c + d * r * 0.6, r * rng.uniform(0.35, 0.7, 3), _random_rot(rng)))
    old, rim, centre = _age(rng, 0.3, True)
    return Lesion(
        "gmh", sec.side, 1, tuple(lobes), float(rng.uniform(0.12, 0.3) * r),
        float(rng.uniform(2.5, 4.0)), old, min(rim, r * 0.45), centre, False,
    )  # fmt: skip


def clot_range(rng: np.random.Generator, sec: VentricleSections, ivh_grade: int) -> np.ndarray:
    """Boolean mask of the sections that hold intraventricular clot."""
    n_main = int(np.sum(sec.part <= 3))
    idx = np.arange(len(sec.part))
    gi = sec.groove_index
    if ivh_grade == 2:
        length = int(rng.integers(4, 12))
        start = int(np.clip(gi - rng.integers(2, 10), 1, n_main - length - 1))
        return (idx >= start) & (idx < start + length)
    frac = rng.uniform(0.7, 1.0)
    length = int(frac * n_main)
    start = int(rng.integers(0, max(n_main - length, 0) + 1))
    rng_mask = (idx >= start) & (idx < start + length)
    if rng.random() < 0.5:
        rng_mask |= (sec.part == 4) & (
            idx < n_main + len(idx) // 8
        )  # spills into the temporal horn
    return rng_mask


def _clot(
    rng: np.random.Generator, sec: VentricleSections, ivh_grade: int, where: np.ndarray
) -> Lesion:
    lobes = []
    fill = rng.uniform(0.7, 1.1) if ivh_grade == 3 else rng.uniform(0.8, 1.3)
    for i in np.flatnonzero(where)[::2]:
        rot = rotation(sec.tangent[i], sec.long_dir[i])
        axes = np.array([3.5, sec.half_long[i] * fill, sec.half_thin[i] * fill + 0.6])
        if ivh_grade == 2:
            axes[1] *= rng.uniform(0.5, 0.9)
        c = sec.center[i] + sec.long_dir[i] * sec.half_long[i] * rng.uniform(-0.1, 0.3)
        lobes.append(Lobe(c.astype(np.float32), axes.astype(np.float32), rot))
    old, rim, centre = _age(rng, 0.35, False)
    return Lesion(
        "ivh", sec.side, ivh_grade, tuple(lobes), float(rng.uniform(0.4, 1.5)),
        float(rng.uniform(2.5, 4.0)), old, rim * 1.3, centre, True,
    )  # fmt: skip


def _infarct(rng: np.random.Generator, sec: VentricleSections) -> Lesion:
    cand = np.flatnonzero((sec.part <= 2) & (np.arange(len(sec.part)) >= sec.groove_index - 6))
    # Fan out of the lateral wall into the periventricular white matter,
    # spreading up and down in the coronal plane.
    tilt = rng.uniform(-0.7, 0.3)
    bases = {}
    for k in cand:
        d = np.array([sec.side, 0.0, tilt])
        d -= sec.tangent[k] * float(d @ sec.tangent[k])
        d /= np.linalg.norm(d)
        bases[int(k)] = (d, sec.center[k] + d * (sec.half_thin[k] * 0.9 + 1.0))
    # Prefer places a parasagittal sweep from the fontanelle reaches (< ~34 deg).
    slope = {k: abs(b[0]) / max(float(b[2]), 1.0) for k, (_, b) in bases.items()}
    reach = [k for k, s in slope.items() if s < np.tan(np.deg2rad(34.0))]
    i = int(rng.choice(reach)) if reach else min(slope, key=slope.__getitem__)
    t = sec.tangent[i]
    out, base = bases[i]
    perp = np.cross(t, out)
    length = float(rng.uniform(8.0, 18.0))
    width = float(rng.uniform(3.0, 8.0))
    spread = np.deg2rad(rng.uniform(-30, 30, int(rng.integers(2, 5))))
    lengths = length * rng.uniform(0.6, 1.0, len(spread))
    dirs = [out * np.cos(a) + perp * np.sin(a) for a in spread]
    # Keep it where a parasagittal sweep (<= 40 deg) can reach and inside the hemisphere.
    for _ in range(6):
        tips = [base + d * ln for d, ln in zip(dirs, lengths, strict=True)]
        mid = np.mean([base + d * ln * 0.5 for d, ln in zip(dirs, lengths, strict=True)], axis=0)
        steep = np.degrees(np.arctan2(abs(mid[0]), max(mid[2], 1.0))) > 38.0
        if not steep and max(abs(tp[0]) for tp in tips) < 30.0:
            break
        lengths = lengths * 0.8
    lobes = []
    for d, ln in zip(dirs, lengths, strict=True):
        axes = np.array([ln / 2, width * rng.uniform(0.6, 1.1), width * rng.uniform(0.4, 0.8)])
        lobes.append(Lobe((base + d * ln * 0.5).astype(np.float32), axes.astype(np.float32),
                          rotation(d, t)))  # fmt: skip
    old, rim, centre = _age(rng, 0.35, True)
    return Lesion(
        "infarct", sec.side, 4, tuple(lobes), float(rng.uniform(0.6, 2.0)),
        float(rng.uniform(2.0, 3.5)), old, rim, centre, False,
    )  # fmt: skip


def place_lesions(
    rng: np.random.Generator, plan: HemispherePlan, sec: VentricleSections, clot_where: np.ndarray
) -> list[Lesion]:
    """Concrete lesion components for one hemisphere on its built ventricle."""
    out: list[Lesion] = []
    if plan.gmh:
        out.append(_nodule(rng, sec))
    if plan.ivh_grade:
        out.append(_clot(rng, sec, plan.ivh_grade, clot_where))
    if plan.infarct:
        out.append(_infarct(rng, sec))
    return out


def pseudo_target(rng: np.random.Generator, sec: VentricleSections) -> np.ndarray:
    """A point where a lesion could be, so normal clips sweep the same places."""
    choice = rng.random()
    if choice < 0.45:
        return sec.groove + rng.normal(0.0, 1.0, 3).astype(np.float32)
    i = int(rng.choice(np.flatnonzero(sec.part <= 2)))
    return sec.center[i] + np.array([sec.side * rng.uniform(0, 6), 0, -rng.uniform(0, 4)])
