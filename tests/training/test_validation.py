"""Operating thresholds picked on the smoothed clip call (pivh_live.training.validation)."""

from __future__ import annotations

import numpy as np
import pytest

from pivh_live.training.data import CaseInfo, FrameSet
from pivh_live.training.validation import (
    clip_grades,
    clip_results,
    pick_thresholds,
)

FPS = 25.0
N = 50  # 2 s clips


def _grade_probs(p_any: np.ndarray) -> np.ndarray:
    """P(grade >= I) = p_any, all of it on grade I."""
    probs = np.zeros((p_any.size, 5))
    probs[:, 0] = 1.0 - p_any
    probs[:, 1] = p_any
    return probs


def _frameset(rng: np.random.Generator) -> tuple[FrameSet, dict[str, np.ndarray]]:
    """20 normal clips (P(I) <= 0.2) and 20 grade I clips, 10 of which only flash.

    A flash is 2 frames (0.08 s, shorter than the 0.3 s onset) at 0.95 on a
    level of 0.35: its peak score is high but the smoothed call never holds
    there. The 10 sustained clips hold 0.55-0.9 for a whole second.
    """
    probs, truth = [], []
    for k in range(40):
        p = rng.uniform(0.0, 0.2, N)
        if 20 <= k < 30:
            p[10:35] = rng.uniform(0.55, 0.9)
        elif k >= 30:
            p[:] = 0.35
            p[20:22] = 0.95
        probs.append(_grade_probs(p))
        truth.append(0 if k < 20 else 1)
    cases = tuple(
        CaseInfo(f"c{k}", g, (0, 0, 8, 8), FPS, N, True, False) for k, g in enumerate(truth)
    )
    frames = FrameSet(
        images=np.zeros((40 * N, 8, 8), np.uint8),
        grade=np.repeat(np.array(truth, np.int8), N),
        valid=np.ones(40 * N, np.int8),
        case_index=np.repeat(np.arange(40, dtype=np.int32), N),
        frame_index=np.tile(np.arange(N, dtype=np.int32), 40),
        t_s=np.tile(np.arange(N) / FPS, 40),
        cases=cases,
    )
    pred = {"grade_probs": np.concatenate(probs), "p_valid": np.ones(40 * N)}
    return frames, pred


def test_pivh_threshold_is_picked_on_the_smoothed_call_not_the_peak() -> None:
    frames, pred = _frameset(np.random.default_rng(7))
    clips = clip_results(frames, pred)
    truth = clips["truth"]

    def grades_at(pivh: float, severe: float) -> np.ndarray:
        return clip_grades(frames, pred, pivh, severe)

    on_peak = pick_thresholds(clips, 0.95, 0.93)
    on_call = pick_thresholds(clips, 0.95, 0.93, grades_at)

    # Every positive clip peaks above the peak-score threshold, yet the flashes
    # never raise the call there: half the positives would be missed.
    assert np.mean(clips["p_pivh"][truth >= 1] >= on_peak["pivh"]) >= 0.95
    peak_calls = grades_at(on_peak["pivh"], on_peak["severe"])
    assert np.mean(peak_calls[truth >= 1] >= 1) <= 0.55

    # The call-based threshold makes the call itself reach the target ...
    calls = grades_at(on_call["pivh"], on_call["severe"])
    assert np.mean(calls[truth >= 1] >= 1) >= 0.95
    assert on_call["pivh"] < on_peak["pivh"]
    # ... and is the highest one that does (to the 1e-5 step, plus the bisection's slack).
    above = grades_at(on_call["pivh"] + 3e-5, on_call["severe"])
    assert np.mean(above[truth >= 1] >= 1) < 0.95
    assert on_call["severe"] == on_peak["severe"]
    assert on_call["valid"] == 0.5


@pytest.mark.parametrize("labels", [[0] * 40, [1] * 40])
def test_one_class_falls_back_to_half(labels: list[int]) -> None:
    frames, pred = _frameset(np.random.default_rng(1))
    clips = clip_results(frames, pred)
    clips["truth"] = np.asarray(labels)
    thr = pick_thresholds(clips, 0.95, 0.93, lambda p, s: clip_grades(frames, pred, p, s))
    assert thr["pivh"] == 0.5


def test_no_threshold_reaches_the_target_gives_the_lowest() -> None:
    frames, pred = _frameset(np.random.default_rng(3))
    clips = clip_results(frames, pred)
    # A clip that never scores above 0 cannot be called at any threshold in range.
    thr = pick_thresholds(clips, 1.0, 0.93, lambda p, s: np.where(clips["truth"] > 0, 0, 0))
    assert thr["pivh"] == 0.01


def test_validate_reports_the_shipped_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    from pivh_live.evaluation.metrics import confusion_matrix, quadratic_weighted_kappa
    from pivh_live.training import validation
    from pivh_live.training.config import TrainConfig

    frames, pred = _frameset(np.random.default_rng(5))
    monkeypatch.setattr(validation, "predict", lambda *_a, **_k: pred)
    metrics, thr = validation.validate(None, frames, TrainConfig(), "cpu")
    truth = clip_results(frames, pred)["truth"]
    calls = clip_grades(frames, pred, thr["pivh"], thr["severe"])
    kappa = quadratic_weighted_kappa(confusion_matrix(truth, calls))
    assert metrics["clip_kappa"] == pytest.approx(kappa, abs=1e-5)
    assert metrics["clip_sensitivity"] >= 0.95
    assert metrics["clip_specificity"] == pytest.approx(np.mean(calls[truth == 0] == 0), abs=1e-5)
    assert metrics["score"] == pytest.approx(metrics["clip_auc"] + metrics["clip_kappa"], abs=1e-4)
