"""Clip rendering: determinism, label/mask agreement, sweeps through lesions."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from phantom_helpers import small_spec

from pivh_live.phantom.clip import (
    MIN_AREA_MM2,
    MIN_TRANSMISSION,
    ClipRenderer,
    render_clip,
    sample_case,
)
from pivh_live.phantom.imaging import ImageFormer


def test_same_spec_same_clip() -> None:
    spec = small_spec(3, seed=5, n_frames=6)
    a, b = render_clip(spec), render_clip(spec)
    assert np.array_equal(a.frames, b.frames)
    assert np.array_equal(a.masks, b.masks)
    assert a.labels == b.labels
    assert a.frames.dtype == np.uint8 and a.masks.dtype == bool
    other = render_clip(replace(spec, seed=spec.seed + 1))
    assert not np.array_equal(a.frames, other.frames)


@pytest.mark.parametrize("grade", [0, 1, 2, 3, 4])
def test_masks_agree_with_labels(grade: int) -> None:
    spec = small_spec(grade, seed=40 + grade, n_frames=30)
    clip = render_clip(spec)
    assert clip.masks.shape[1:] == (clip.roi.h, clip.roi.w)
    assert spec.clip_grade == grade == max(spec.grade_left, spec.grade_right)
    visible = [lab.visible_grade for lab in clip.labels]
    assert clip.clip_grade == max(visible) == max(clip.sweep_grades)
    assert clip.clip_grade == grade  # these sweeps are centred on the worst lesion
    for lab, mask in zip(clip.labels, clip.masks, strict=True):
        assert lab.valid
        assert mask.any() == (lab.visible_grade > 0)
        assert lab.visible_grade == max(lab.grade_left, lab.grade_right)
        assert lab.grade_left <= spec.grade_left and lab.grade_right <= spec.grade_right
    visible = np.array([lab.visible_grade for lab in clip.labels])
    if grade:
        # The sweep is centred on a lesion: a good share of frames shows one.
        assert (visible > 0).mean() >= 0.2
    else:
        assert not clip.masks.any()


def test_visible_masks_are_large_enough() -> None:
    r = ClipRenderer(small_spec(1, seed=3, n_frames=20))
    min_px = MIN_AREA_MM2 / r.geom.px_mm**2
    for f in r.frames():
        if f.label.visible_grade > 0:
            assert f.mask.sum() >= min_px


def test_invalid_frames_have_no_brain_and_no_mask() -> None:
    spec = small_spec(3, seed=8, n_frames=24, steady=False)
    spec = replace(spec, style=replace(spec.style, p_off_start=1.0, p_lift=1.0, p_off_end=0.0))
    clip = render_clip(spec)
    invalid = [i for i, lab in enumerate(clip.labels) if not lab.valid]
    assert invalid and invalid[0] == 0
    for i in invalid:
        lab = clip.labels[i]
        assert (lab.visible_grade, lab.grade_left, lab.grade_right) == (-1, -1, -1)
        assert not clip.masks[i].any()
    # A lifted probe shows no tissue: the frame is far darker than a valid one.
    valid = [i for i, lab in enumerate(clip.labels) if lab.valid]
    assert clip.frames[invalid].mean() < 0.5 * clip.frames[valid].mean()


def test_frozen_frames_repeat_exactly() -> None:
    spec = small_spec(2, seed=9, n_frames=40, steady=False)
    spec = replace(spec, style=replace(spec.style, p_freeze=2.0))
    r = ClipRenderer(spec)
    frames = list(r.frames())
    frozen = np.flatnonzero(r.motion.frozen)
    assert len(frozen)
    for t in frozen:
        assert np.array_equal(frames[t].image, frames[t - 1].image)
        assert frames[t].label.visible_grade == frames[t - 1].label.visible_grade
        assert frames[t].label.frame == t


def test_sample_case_sides_and_prevalence() -> None:
    rng = np.random.default_rng(0)
    specs = [sample_case(rng, "nicu") for _ in range(3000)]
    grades = np.array([s.clip_grade for s in specs])
    freq = np.bincount(grades, minlength=5) / len(grades)
    assert np.allclose(freq, [0.578, 0.251, 0.070, 0.048, 0.055], atol=0.03)
    for s in specs:
        assert s.side == {(0, 0): "none"}.get(
            (s.grade_left, s.grade_right),
            "bilateral"
            if s.grade_left and s.grade_right
            else ("left" if s.grade_left else "right"),
        )
    bilateral = np.mean([s.side == "bilateral" for s in specs if s.clip_grade > 1])
    assert 0.1 < bilateral < 0.5
    assert {s.view for s in specs} == {"coronal", "sagittal"}


def test_lesions_in_acoustic_shadow_are_not_labelled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only labels change when the beam never reaches a lesion; the clip grade follows."""
    spec = small_spec(3, seed=43, n_frames=6)
    seen = render_clip(spec)
    assert seen.clip_grade == 3 and seen.masks.any()
    echo = ImageFormer.echo

    def all_shadow(self: ImageFormer, backscatter: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        amp, transmission = echo(self, backscatter)
        return amp, np.full_like(transmission, MIN_TRANSMISSION * 0.99)

    monkeypatch.setattr(ImageFormer, "echo", all_shadow)
    hidden = render_clip(spec)
    assert np.array_equal(hidden.frames, seen.frames)  # the picture is the same
    assert not hidden.masks.any()
    assert all(lab.visible_grade == 0 for lab in hidden.labels)
    assert hidden.clip_grade == 0 and hidden.sweep_grades == (0, 0) and hidden.side == "none"
    assert hidden.spec.clip_grade == 3  # the exam grade of the head is unchanged


def test_normal_prevalence_draws_normal_heads_with_the_traps() -> None:
    """``normal`` gives grade 0 exams only; the unlabelled traps still appear (extra negatives)."""
    rng = np.random.default_rng(1)
    specs = [sample_case(rng, "normal") for _ in range(300)]
    assert {(s.grade_left, s.grade_right, s.clip_grade) for s in specs} == {(0, 0, 0)}
    assert {s.side for s in specs} == {"none"}
    blush = np.mean(["blush" in s.traps for s in specs])
    assert 0.2 < blush < 0.4
