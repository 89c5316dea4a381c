"""Which metrics are reported at clip and frame level, on hand-made arrays."""

from __future__ import annotations

import numpy as np
import pytest

from pivh_live.evaluation import summary

THR = {"pivh": 0.5, "severe": 0.5, "valid": 0.5}


def _clips(assessable: list[bool] | None = None) -> summary.ClipArrays:
    t = np.array([0, 0, 0, 1, 2, 3, 4, 3])
    p = np.array([0.1, 0.2, 0.0, 0.8, 0.9, 0.95, 0.99, 0.0])
    sev = np.array([0.0, 0.1, 0.0, 0.2, 0.3, 0.9, 0.95, 0.0])
    pred = np.array([0, 0, 0, 1, 2, 3, 4, 0])
    mask = None if assessable is None else np.array(assessable)
    return summary.ClipArrays(t, pred, p, sev, mask)


def test_unassessable_clips_are_left_out_with_a_worst_case() -> None:
    # Clip 2 (grade 0) and clip 7 (grade III) showed no valid frame.
    ok = [True, True, False, True, True, True, True, False]
    res = summary.clip_metrics(_clips(ok), THR, 30, 0)
    assert res["n_clips"] == 6
    un = res["unassessable"]
    assert un["n"] == 2 and un["by_label_grade"] == [1, 0, 0, 1, 0]
    # Among assessable clips every call is right.
    assert res["any_pivh"]["auc"]["value"] == 1.0
    at = res["any_pivh"]["at_threshold"]
    assert (at["tp"], at["fp"], at["tn"], at["fn"]) == (4, 0, 2, 0)
    # Worst case: the grade-0 clip becomes a false alarm, the grade-III clip a miss.
    wc = un["any_pivh_worst_case"]
    assert (wc["tp"], wc["fp"], wc["tn"], wc["fn"]) == (4, 1, 2, 1)
    sev = un["severe_worst_case"]
    assert (sev["tp"], sev["fp"], sev["tn"], sev["fn"]) == (2, 1, 4, 1)


def test_all_assessable_matches_no_mask() -> None:
    a = summary.clip_metrics(_clips(), THR, 30, 0)
    b = summary.clip_metrics(_clips([True] * 8), THR, 30, 0)
    assert a == b
    # Clip 7 (grade III, p 0) is a miss: below negatives 0.1 and 0.2, tied with 0.0,
    # so 2.5 of the 5 x 3 pairs are lost.
    assert a["any_pivh"]["auc"]["value"] == pytest.approx(1 - 2.5 / 15)


def test_nicu_weighted_sensitivity_and_targets() -> None:
    res = summary.clip_metrics(_clips(), THR, 30, 0)
    w = res["any_pivh"]["nicu_weighted_sensitivity"]
    assert w["per_grade"] == {"1": 1.0, "2": 1.0, "3": 0.5, "4": 1.0}
    assert w["value"] == pytest.approx((25.1 + 7.0 + 0.5 * 4.8 + 5.5) / 42.4)
    targets = {t["name"]: t for t in summary.targets(res)}
    assert targets["any-PIVH clip AUC"]["met"] is False
    qwk = targets["clip grade QWK"]
    assert qwk["value"] == pytest.approx(res["grade"]["qwk"]["value"])
    assert qwk["met"] is (qwk["value"] >= 0.90)


def test_frame_metrics_use_only_graded_frames() -> None:
    grade = np.array([-2, -1, 0, 0, 2, 3, -1, 0, 1, 4])
    valid = np.array([-1, 0, 1, 1, 1, 1, 0, 1, 1, 1])
    case = np.repeat([0, 1], 5)
    probs = np.zeros((10, 5))
    probs[np.arange(10), np.clip(grade, 0, 4)] = 1.0
    p_valid = (grade >= 0) * 0.9 + 0.05
    fa = summary.FrameArrays(case, grade, valid, probs, p_valid)
    res = summary.frame_metrics(fa, THR, 30, 0)
    assert res["n_frames"] == 7 and res["n_cases"] == 2
    assert res["any_pivh"]["auc"]["value"] == 1.0
    assert res["grade"]["qwk"]["value"] == pytest.approx(1.0)
    assert res["validity"]["n_frames"] == 9 and res["validity"]["n_invalid"] == 2
    assert res["validity"]["at_threshold"]["accuracy"]["value"] == 1.0
    assert res["calibration"]["ece"] == pytest.approx(0.0)
