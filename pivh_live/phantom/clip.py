"""Cases and clips: sample a case, render its sweep frame by frame with labels.

Label definitions (see docs/phantom.md):

* mask: pixels of the image region where a haemorrhage component is cut by
  the slice (lesion occupancy > 0.5 after scan conversion). Grade I: the
  germinal matrix nodule; II: the intraventricular clot; III: the whole lumen
  of the dilated, blood-filled ventricle; IV: the periventricular infarct
  (its intraventricular blood is a separate grade II/III component).
* a component is visible when its mask covers at least ``MIN_AREA_MM2``;
  smaller cuts are removed from the mask, so ``mask.any()`` is exactly
  ``visible_grade > 0``.
* grade_left / grade_right: worst visible component per hemisphere;
  visible_grade: the worse of the two; -1 (and an empty mask) when no brain
  is shown (probe lifted or off the head).
* clip grades (labels.csv): per hemisphere the worst grade visible in any
  frame; clip_grade is the worse of the two. The exam grade of the head
  (``CaseSpec.clip_grade``) can be worse: a sweep may miss the worst lesion or
  see it only in acoustic shadow.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from pivh_live.frames import Roi
from pivh_live.phantom.head import TRAPS, build_head
from pivh_live.phantom.imaging import ImageFormer, SpeckleField
from pivh_live.phantom.scanconv import SectorGeometry, sector_geometry
from pivh_live.phantom.screen import Screen
from pivh_live.phantom.styles import ScannerStyle, sample_style
from pivh_live.phantom.sweep import plan_motion, plane
from pivh_live.phantom.volume import sample_nearest, sample_trilinear

log = logging.getLogger(__name__)

MIN_AREA_MM2 = 3.0
# Beam amplitude (fraction reaching the lesion) below which it counts as hidden in
# acoustic shadow: -14 dB, a modelling choice; the shadowed lesions seen on the
# seed-1001 test set had a median of 5e-4.
MIN_TRANSMISSION = 0.2
PREVALENCE = {
    "balanced": (0.2, 0.2, 0.2, 0.2, 0.2),
    # Korean Neonatal Network, VLBW infants (docs/clinical background).
    "nicu": (0.578, 0.251, 0.070, 0.048, 0.055),
    # Normal heads only: extra negatives for training, or a specificity set.
    "normal": (1.0, 0.0, 0.0, 0.0, 0.0),
}
VIEWS = ("coronal", "sagittal")


@dataclass(frozen=True)
class CaseSpec:
    """Everything needed to render one clip deterministically."""

    case_id: str
    seed: int
    grade_left: int
    grade_right: int
    view: str
    n_frames: int
    fps: float
    screen: bool
    style: ScannerStyle
    ga_weeks: float = 30.0
    traps: tuple[str, ...] = ()

    @property
    def clip_grade(self) -> int:
        return max(self.grade_left, self.grade_right)

    @property
    def side(self) -> str:
        return side_name(self.grade_left, self.grade_right)


def side_name(left: int, right: int) -> str:
    """labels.csv's ``side`` for hemisphere grades ``left`` and ``right``."""
    if left and right:
        return "bilateral"
    if left:
        return "left"
    return "right" if right else "none"


@dataclass(frozen=True)
class FrameLabel:
    frame: int
    visible_grade: int  # -1 no brain shown, else 0-4
    valid: bool
    grade_left: int  # -1 when not valid
    grade_right: int
    view: str
    angle_deg: float


@dataclass(frozen=True)
class RenderedFrame:
    image: np.ndarray  # full frame (screen) or region, uint8 (H, W)
    region: np.ndarray  # the ultrasound image region (the ROI's pixels), uint8
    mask: np.ndarray  # bool, region grid
    label: FrameLabel


@dataclass(frozen=True)
class Clip:
    spec: CaseSpec
    frames: np.ndarray  # uint8 (T, H, W)
    masks: np.ndarray  # bool (T, h, w) in the ROI's pixel grid
    labels: tuple[FrameLabel, ...]
    roi: Roi
    extras: dict = field(default_factory=dict, compare=False)

    @property
    def clip_grade(self) -> int:
        """The worst grade this clip shows (see `sweep_grades`)."""
        return max(self.sweep_grades)

    @property
    def sweep_grades(self) -> tuple[int, int]:
        """(left, right): the worst grade visible in any frame, per hemisphere.

        At most the exam's grades (``spec.grade_left`` / ``grade_right``): a sweep
        that never cuts a lesion, or sees it only in acoustic shadow, shows less.
        """
        left = max((lab.grade_left for lab in self.labels if lab.valid), default=0)
        right = max((lab.grade_right for lab in self.labels if lab.valid), default=0)
        return max(left, 0), max(right, 0)

    @property
    def side(self) -> str:
        return side_name(*self.sweep_grades)


def _side_grades(rng: np.random.Generator, grade: int) -> tuple[int, int]:
    if grade == 0:
        return 0, 0
    other = 0
    if rng.random() < (0.15 if grade == 1 else 0.3):
        other = int(rng.integers(1, grade + 1))
        if other == 4 and rng.random() < 0.8:  # bilateral infarcts are rare
            other = int(rng.integers(1, 4))
    return (grade, other) if rng.random() < 0.5 else (other, grade)


def sample_case(
    rng: np.random.Generator,
    prevalence: str = "balanced",
    *,
    case_id: str = "ph00000",
    n_frames: int = 125,
    fps: float = 25.0,
    screen: bool = False,
    grade: int | None = None,
) -> CaseSpec:
    """Sample a case: exam grade from ``prevalence`` (or ``grade``), sides, view, style, traps."""
    if grade is None:
        p = np.asarray(PREVALENCE[prevalence])
        grade = int(rng.choice(5, p=p / p.sum()))  # the published table sums to 100.2%
    left, right = _side_grades(rng, grade)
    traps = tuple(t for t in TRAPS if rng.random() < 0.3)
    ga = float(rng.uniform(28.0, 32.0))
    return CaseSpec(
        case_id=case_id,
        seed=int(rng.integers(0, 2**63 - 1)),
        grade_left=left,
        grade_right=right,
        view=str(rng.choice(VIEWS)),
        n_frames=int(n_frames),
        fps=float(fps),
        screen=bool(screen),
        style=sample_style(rng, screen=screen, ga_weeks=ga),
        ga_weeks=ga,
        traps=traps,
    )


def _visible(occ: np.ndarray, code: np.ndarray, min_px: float) -> tuple[np.ndarray, int, int]:
    """Mask and per-hemisphere visible grades from scan-converted occupancy and codes."""
    grade = code & 7
    cand = (occ > 0.5) & (grade > 0)
    counts = np.bincount(code[cand], minlength=16)
    keep = [c for c in range(16) if (c & 7) and counts[c] >= min_px]
    if not keep:
        return np.zeros(occ.shape, dtype=bool), 0, 0
    mask = cand & np.isin(code, keep)
    left = max([c & 7 for c in keep if c & 8], default=0)
    right = max([c & 7 for c in keep if not c & 8], default=0)
    return mask, left, right


class ClipRenderer:
    """Renders one case frame by frame (used by render_clip and live sources)."""

    def __init__(self, spec: CaseSpec) -> None:
        self.spec = spec
        ss = np.random.SeedSequence(spec.seed).spawn(4)
        rng_head, rng_motion, rng_speckle, self._rng_blank = (np.random.default_rng(s) for s in ss)
        self.head = build_head(
            rng_head, spec.grade_left, spec.grade_right, frozenset(spec.traps), spec.ga_weeks
        )
        st = spec.style
        self.geom: SectorGeometry = sector_geometry(st)
        self.former = ImageFormer(st, self.geom)
        self.speckle = SpeckleField(
            rng_speckle, (self.geom.n_beams, self.geom.n_samples), st.speckle_r
        )
        self.motion = plan_motion(
            rng_motion, spec.view, self.head.target, spec.n_frames, spec.fps,
            (st.p_freeze, st.p_lift, st.p_off_start, st.p_off_end, st.gain_drift_db),
        )  # fmt: skip
        self.screen = Screen(st.screen, self.geom, spec) if spec.screen and st.screen else None
        h, w = self.geom.height, self.geom.width
        self.roi = self.screen.roi if self.screen else Roi(0, 0, w, h)
        self._min_px = MIN_AREA_MM2 / self.geom.px_mm**2

    def frames(self) -> Iterator[RenderedFrame]:
        prev: RenderedFrame | None = None
        for t in range(self.spec.n_frames):
            if prev is not None and self.motion.frozen[t]:
                lab = prev.label
                prev = RenderedFrame(prev.image, prev.region, prev.mask, FrameLabel(t, *_tail(lab)))
            else:
                prev = self._render(t)
            yield prev

    def _render(self, t: int) -> RenderedFrame:
        m, spec = self.motion, self.spec
        z = self.speckle.next()
        angle = float(m.angle[t])
        if not m.valid[t]:
            region = self.geom.convert(self.former.blank(self._rng_blank, z, float(m.gain_db[t])))
            mask = np.zeros(region.shape, dtype=bool)
            label = FrameLabel(t, -1, False, -1, -1, spec.view, round(angle, 2))
        else:
            axis, lateral = plane(spec.view, angle, float(m.roll[t]), float(m.twist[t]))
            pts = self.geom.points(m.offset[t], axis, lateral)
            grid = self.head.grid
            amp = sample_trilinear(self.head.amp, grid, pts)
            amp, pts = _conform_skin(amp, pts)
            code = sample_nearest(self.head.code, grid, pts)
            occ = np.zeros(amp.shape, dtype=np.float32)
            near = code > 0  # codes are grown by a voxel, so they cover every lesion edge
            if near.any():
                occ[near] = sample_trilinear(self.head.lesion_occ, grid, pts[near])
            code = code | np.where(pts[..., 0] > 0, 8, 0).astype(np.uint8)
            echo, transmission = self.former.echo(amp)
            region = self.geom.convert(self.former.form_echo(echo, z, float(m.gain_db[t])))
            # What lies in acoustic shadow (behind bone) is not shown, so it is not labelled.
            occ = self.geom.convert(occ * (transmission >= MIN_TRANSMISSION))
            code_img = self.geom.convert(code, nearest=True)
            mask, gl, gr = _visible(occ, code_img, self._min_px)
            label = FrameLabel(t, max(gl, gr), True, gl, gr, spec.view, round(angle, 2))
        image = self.screen.compose(region, t) if self.screen else region
        return RenderedFrame(image, region, mask, label)


def _conform_skin(amp: np.ndarray, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start every beam at the skin, as the scalp in the fontanelle conforms to the probe.

    Without this, oblique beams of a curved footprint would start in air above
    the curved head surface. Labels are sampled from the shifted points, so
    they stay exact.
    """
    n = amp.shape[1]
    touching = amp > 0.05
    first = np.where(touching.any(axis=1), touching.argmax(axis=1), 0)
    first = np.minimum(first, n // 4)[:, None]
    idx = np.minimum(np.arange(n)[None, :] + first, n - 1)
    return np.take_along_axis(amp, idx, axis=1), np.take_along_axis(pts, idx[..., None], axis=1)


def _tail(lab: FrameLabel) -> tuple:
    return (lab.visible_grade, lab.valid, lab.grade_left, lab.grade_right, lab.view, lab.angle_deg)


def iter_clip_frames(spec: CaseSpec) -> Iterator[RenderedFrame]:
    """Yield one rendered frame at a time (for live sources)."""
    yield from ClipRenderer(spec).frames()


def render_clip(spec: CaseSpec) -> Clip:
    """Render a whole clip into memory."""
    r = ClipRenderer(spec)
    out = list(r.frames())
    frames = np.stack([f.image for f in out])
    masks = np.stack([f.mask for f in out])
    labels = tuple(f.label for f in out)
    return Clip(spec, frames, masks, labels, r.roi, {"clot_fraction": r.head.clot_fraction})
