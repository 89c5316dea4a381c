"""Metrics against hand-computed values and brute-force definitions."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from pivh_live.evaluation import metrics as m


def _pairwise_auc(y: np.ndarray, s: np.ndarray) -> float:
    pos, neg = s[y == 1], s[y == 0]
    wins = sum((p > q) + 0.5 * (p == q) for p, q in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_auc_constant_scores_is_half() -> None:
    assert m.roc_auc([0, 1, 0, 1, 1], [0.3] * 5) == pytest.approx(0.5)


def test_auc_perfect_and_inverted() -> None:
    y = [0, 0, 1, 1]
    assert m.roc_auc(y, [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert m.roc_auc(y, [0.9, 0.8, 0.2, 0.1]) == 0.0


def test_auc_known_small_example_with_tie() -> None:
    # Pairs (pos, neg): (0.8,0.1) win, (0.8,0.4) win, (0.4,0.1) win, (0.4,0.4) tie -> 3.5/4.
    assert m.roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.4, 0.8]) == pytest.approx(0.875)


def test_auc_matches_pairwise_definition_on_random_ties() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 200)
    s = rng.integers(0, 7, 200).astype(float)  # many ties
    assert m.roc_auc(y, s) == pytest.approx(_pairwise_auc(y, s))


def test_auc_one_class_is_nan() -> None:
    assert math.isnan(m.roc_auc([1, 1, 1], [0.1, 0.5, 0.9]))


def test_roc_curve_points_and_area() -> None:
    y = np.array([0, 0, 1, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8])
    fpr, tpr, thr = m.roc_curve(y, s)
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 0.5, 1, 1])
    assert thr[0] == np.inf
    np.testing.assert_allclose(thr[1:], [0.8, 0.4, 0.35, 0.1])
    assert np.trapezoid(tpr, fpr) == pytest.approx(m.roc_auc(y, s))


def test_roc_curve_area_equals_auc_with_ties() -> None:
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.random(300) + 0.3 * y, 1)
    fpr, tpr, _ = m.roc_curve(y, s)
    assert np.trapezoid(tpr, fpr) == pytest.approx(m.roc_auc(y, s))


def test_sensitivity_at_specificity() -> None:
    # 10 negatives 0.0..0.9, 4 positives; spec >= 0.9 allows one negative call (0.9).
    y = np.array([0] * 10 + [1] * 4)
    s = np.array([i / 10 for i in range(10)] + [0.95, 0.85, 0.5, 0.05])
    op = m.sensitivity_at_specificity(y, s, 0.9)
    assert op.specificity == pytest.approx(0.9)
    assert op.sensitivity == pytest.approx(0.5)  # 0.95 and 0.85 are caught at thr 0.85
    assert op.threshold == pytest.approx(0.85)
    strict = m.sensitivity_at_specificity(y, s, 1.0)
    assert strict.sensitivity == pytest.approx(0.25)
    assert strict.specificity == 1.0


def test_specificity_at_sensitivity() -> None:
    y = np.array([0] * 10 + [1] * 4)
    s = np.array([i / 10 for i in range(10)] + [0.95, 0.85, 0.5, 0.05])
    op = m.specificity_at_sensitivity(y, s, 0.75)
    assert op.sensitivity == pytest.approx(0.75)
    assert op.specificity == pytest.approx(0.5)  # threshold 0.5 calls 0.5..0.9 positive
    full = m.specificity_at_sensitivity(y, s, 1.0)
    assert full.sensitivity == 1.0
    assert full.specificity == pytest.approx(0.1)  # threshold 0.05 calls all but 0.0


def test_wilson_interval_known_values() -> None:
    # Reference values: Wilson 95% for 8/10 is (0.4902, 0.9433); for 0/10 (0, 0.2775).
    iv = m.wilson_interval(8, 10)
    assert iv.value == 0.8
    assert iv.lo == pytest.approx(0.4902, abs=1e-4)
    assert iv.hi == pytest.approx(0.9433, abs=1e-4)
    zero = m.wilson_interval(0, 10)
    assert zero.lo == 0.0
    assert zero.hi == pytest.approx(0.2775, abs=1e-4)
    assert math.isnan(m.wilson_interval(0, 0).value)


def test_binary_stats_counts_and_rates() -> None:
    y = [1, 1, 1, 0, 0, 0, 0, 1]
    s = [0.9, 0.6, 0.2, 0.7, 0.1, 0.3, 0.5, 0.5]
    st = m.binary_stats(y, s, 0.5)
    assert (st.tp, st.fp, st.tn, st.fn) == (3, 2, 2, 1)
    assert st.sensitivity().value == pytest.approx(0.75)
    assert st.specificity().value == pytest.approx(0.5)
    assert st.ppv().value == pytest.approx(0.6)
    assert st.npv().value == pytest.approx(2 / 3)


def test_prevalence_reweighting_known_case() -> None:
    # se 0.9, sp 0.8, p 0.1: PPV = 0.09 / (0.09 + 0.18) = 1/3; NPV = 0.72 / (0.72 + 0.01).
    ppv, npv = m.ppv_npv_at_prevalence(0.9, 0.8, 0.1)
    assert ppv == pytest.approx(1 / 3)
    assert npv == pytest.approx(0.72 / 0.73)


def test_reweighting_recovers_observed_ppv_at_observed_prevalence() -> None:
    st = m.binary_stats([1] * 30 + [0] * 70, [0.9] * 24 + [0.1] * 6 + [0.9] * 7 + [0.1] * 63, 0.5)
    rew = st.at_prevalence(0.3)
    assert rew["ppv"].value == pytest.approx(st.ppv().value)
    assert rew["npv"].value == pytest.approx(st.npv().value)
    assert rew["ppv"].lo <= rew["ppv"].value <= rew["ppv"].hi
    low_prev = st.at_prevalence(m.NICU_SEVERE_PREVALENCE)
    assert low_prev["ppv"].value < st.ppv().value  # rarer disease, lower PPV


def test_nicu_prevalences() -> None:
    any_pivh, severe = m.NICU_PIVH_PREVALENCE, m.NICU_SEVERE_PREVALENCE
    assert any_pivh == pytest.approx(0.422)
    assert severe == pytest.approx(0.103)


def test_confusion_matrix_and_qwk_perfect() -> None:
    y = [0, 1, 2, 3, 4, 4, 0]
    cm = m.confusion_matrix(y, y)
    assert np.array_equal(np.diag(cm), [2, 1, 1, 1, 2])
    assert cm.sum() == 7
    assert m.quadratic_weighted_kappa(cm) == pytest.approx(1.0)


def test_qwk_known_value() -> None:
    # 3 classes, cm [[1,1,0],[0,1,0],[0,0,1]], N=4. W = [[0,.25,1],[.25,0,.25],[1,.25,0]].
    # Observed sum(W*O) = 0.25. Rows (2,1,1), cols (1,2,1); E = outer / 4 =
    # [[.5,1,.5],[.25,.5,.25],[.25,.5,.25]]; sum(W*E) = .75 + .125 + .375 = 1.25.
    cm = np.array([[1, 1, 0], [0, 1, 0], [0, 0, 1]])
    assert m.quadratic_weighted_kappa(cm) == pytest.approx(1 - 0.25 / 1.25)


def test_qwk_penalises_far_errors_more() -> None:
    y = np.array([0, 1, 2, 3, 4] * 4)
    near = np.clip(y + 1, 0, 4)
    far = (y + 3) % 5
    qn = m.quadratic_weighted_kappa(m.confusion_matrix(y, near))
    qf = m.quadratic_weighted_kappa(m.confusion_matrix(y, far))
    assert qn > qf


def test_confusion_matrix_rejects_out_of_range() -> None:
    with pytest.raises(ValueError):
        m.confusion_matrix([0, 5], [0, 1])


def test_weighted_recall_uses_mix_and_renormalises() -> None:
    grades = [1, 1, 2, 3, 3, 4]
    hits = [True, False, True, True, True, False]
    w = {1: 25.1, 2: 7.0, 3: 4.8, 4: 5.5}
    value, per = m.weighted_recall(grades, hits, w)
    assert per == {1: 0.5, 2: 1.0, 3: 1.0, 4: 0.0}
    assert value == pytest.approx((25.1 * 0.5 + 7.0 + 4.8) / 42.4)
    missing, per2 = m.weighted_recall([1, 1], [True, False], w)
    assert missing == pytest.approx(0.5) and list(per2) == [1]


def test_ece_calibrated_bins_near_zero() -> None:
    rng = np.random.default_rng(0)
    p = rng.random(200_000)
    y = rng.random(200_000) < p
    bins = m.reliability_bins(y, p, n_bins=10)
    assert sum(b.count for b in bins) == 200_000
    assert m.expected_calibration_error(bins) < 0.01


def test_ece_overconfident_known_value() -> None:
    # All predictions 0.9 (bin 9), half positive: ECE = |0.5 - 0.9| = 0.4.
    bins = m.reliability_bins([1, 0, 1, 0], [0.9] * 4, n_bins=10)
    assert bins[9].count == 4 and bins[0].count == 0
    assert m.expected_calibration_error(bins) == pytest.approx(0.4)
    edge = m.reliability_bins([1], [1.0], n_bins=10)
    assert edge[9].count == 1  # p = 1 falls in the last, closed bin


def test_bootstrap_contains_estimate_and_is_deterministic() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 120)
    s = rng.random(120) + 0.6 * y
    a = m.bootstrap_auc(y, s, n_resamples=300, seed=7)
    b = m.bootstrap_auc(y, s, n_resamples=300, seed=7)
    c = m.bootstrap_auc(y, s, n_resamples=300, seed=8)
    assert a == b
    assert a.interval != c.interval
    assert a.interval.lo <= a.interval.value <= a.interval.hi
    assert a.interval.value == pytest.approx(m.roc_auc(y, s))
    assert a.n_valid == 300 and a.unit == "sample"


def test_cluster_bootstrap_is_wider_for_correlated_frames() -> None:
    # 20 clips of 50 identical frames: per-frame resampling pretends there are
    # 1000 independent samples, cluster resampling sees 20.
    rng = np.random.default_rng(2)
    clip_y = np.array([0, 1] * 10)
    clip_s = rng.random(20) + 0.5 * clip_y
    y, s = np.repeat(clip_y, 50), np.repeat(clip_s, 50)
    groups = np.repeat(np.arange(20), 50)
    frame = m.bootstrap_auc(y, s, n_resamples=400, seed=0)
    clustered = m.bootstrap_auc(y, s, groups=groups, n_resamples=400, seed=0)
    assert clustered.unit == "cluster"
    width = clustered.interval.hi - clustered.interval.lo
    assert width > 2 * (frame.interval.hi - frame.interval.lo)


def test_cluster_resample_keeps_whole_clusters() -> None:
    groups = np.array([5, 5, 5, 9, 2, 2])
    seen: list[np.ndarray] = []

    def stat(g: np.ndarray) -> float:
        seen.append(g.copy())
        return 0.0

    m.bootstrap_ci(stat, [groups], groups=groups, n_resamples=50, seed=0)
    sizes = {5: 3, 9: 1, 2: 2}
    for g in seen[1:]:
        vals, counts = np.unique(g, return_counts=True)
        for v, c in zip(vals, counts, strict=True):
            assert c % sizes[int(v)] == 0


def test_bootstrap_drops_one_class_resamples() -> None:
    y = np.array([1, 0, 0, 0, 0, 0])
    s = np.array([0.9, 0.1, 0.2, 0.3, 0.4, 0.5])
    res = m.bootstrap_auc(y, s, n_resamples=200, seed=0)
    # P(no positive drawn) = (5/6)^6 ~ 0.33: some resamples are undefined, not zero.
    assert 50 < res.n_valid < 200
    assert res.interval.lo == pytest.approx(1.0)


def test_bootstrap_all_undefined_gives_nan_bounds() -> None:
    res = m.bootstrap_auc(np.ones(5), np.arange(5.0), n_resamples=20, seed=0)
    assert res.n_valid == 0
    assert math.isnan(res.interval.lo) and math.isnan(res.interval.value)
    assert res.to_dict()["lo"] is None
