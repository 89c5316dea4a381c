"""Evaluation metrics in plain numpy: ROC/AUC, bootstrap CIs, operating points,
prevalence re-weighting, grade agreement and calibration.

Conventions: labels are 0/1 (or Papile grades 0-4), scores are "higher means
more likely positive", and a case is called positive when ``score >= threshold``.
Undefined quantities (an AUC with one class, a PPV with no positive calls) are
``nan``, never a made-up number. Definitions are in docs/evaluation.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

# Korean Neonatal Network, VLBW infants (docs/clinical.md): share of each
# Papile grade, in percent. The published shares add up to 100.2 (rounding);
# weights are normalised over the grades used, so this does not matter there.
NICU_GRADE_MIX: Mapping[int, float] = {0: 57.8, 1: 25.1, 2: 7.0, 3: 4.8, 4: 5.5}
NICU_PIVH_PREVALENCE = 1.0 - 0.578  # any PIVH, grade I-IV
NICU_SEVERE_PREVALENCE = 0.048 + 0.055  # grade III-IV

Z_95 = 1.959963984540054


@dataclass(frozen=True)
class Interval:
    """A point estimate with a confidence interval (``nan`` bounds when undefined)."""

    value: float
    lo: float
    hi: float

    def to_dict(self) -> dict[str, float | None]:
        return {
            "value": json_float(self.value),
            "lo": json_float(self.lo),
            "hi": json_float(self.hi),
        }


@dataclass(frozen=True)
class BootstrapResult:
    """Bootstrap percentile interval; ``n_valid`` resamples had a defined statistic."""

    interval: Interval
    n_resamples: int
    n_valid: int
    unit: str  # "sample" or "cluster"

    def to_dict(self) -> dict[str, object]:
        return {
            **self.interval.to_dict(),
            "n_resamples": self.n_resamples,
            "n_valid": self.n_valid,
            "resampling": self.unit,
        }


@dataclass(frozen=True)
class OperatingPoint:
    """A threshold and the sensitivity/specificity it gives."""

    threshold: float
    sensitivity: float
    specificity: float


def json_float(x: float) -> float | None:
    """JSON has no NaN: undefined values become null."""
    return None if x is None or not math.isfinite(x) else float(x)


def _binary(y: np.ndarray | Sequence[int]) -> np.ndarray:
    y = np.asarray(y)
    return y.astype(bool) if y.dtype != bool else y


def wilson_interval(k: int, n: int, z: float = Z_95) -> Interval:
    """Wilson score interval for the proportion k/n (good near 0 and 1, small n)."""
    if n <= 0:
        return Interval(math.nan, math.nan, math.nan)
    p = k / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half))


def _midranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given the mean of the ranks they span."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    new = np.empty(len(xs), dtype=bool)
    new[:1] = True
    new[1:] = xs[1:] != xs[:-1]
    starts = np.flatnonzero(new)
    counts = np.diff(np.append(starts, len(xs)))
    mean_rank = starts + (counts + 1) / 2.0
    ranks = np.empty(len(xs), dtype=float)
    ranks[order] = np.repeat(mean_rank, counts)
    return ranks


def roc_auc(y: np.ndarray | Sequence[int], scores: np.ndarray | Sequence[float]) -> float:
    """Area under the ROC curve via the Mann-Whitney U statistic; ties count 1/2.

    Equals P(score of a random positive > score of a random negative) + 0.5 P(tie).
    ``nan`` when only one class is present.
    """
    y = _binary(y)
    s = np.asarray(scores, dtype=float)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = _midranks(s)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def roc_curve(
    y: np.ndarray | Sequence[int], scores: np.ndarray | Sequence[float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC points ``(fpr, tpr, thresholds)``, one per distinct score, from (0, 0).

    Point i is the rule ``score >= thresholds[i]``; the first threshold is +inf
    (nothing called positive). Rates are ``nan`` for a class that is absent.
    """
    y = _binary(y)
    s = np.asarray(scores, dtype=float)
    if len(s) == 0:
        return np.array([np.nan]), np.array([np.nan]), np.array([np.inf])
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    last_of_value = np.flatnonzero(np.append(s_sorted[1:] != s_sorted[:-1], True))
    tp = np.cumsum(y_sorted)[last_of_value]
    fp = (last_of_value + 1) - tp
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = np.concatenate([[0.0], tp / n_pos]) if n_pos else np.full(len(tp) + 1, np.nan)
        fpr = np.concatenate([[0.0], fp / n_neg]) if n_neg else np.full(len(fp) + 1, np.nan)
    thresholds = np.concatenate([[np.inf], s_sorted[last_of_value]])
    return fpr, tpr, thresholds


def sensitivity_at_specificity(
    y: np.ndarray | Sequence[int], scores: np.ndarray | Sequence[float], min_specificity: float
) -> OperatingPoint:
    """Highest sensitivity over thresholds whose specificity is at least ``min_specificity``."""
    fpr, tpr, thr = roc_curve(y, scores)
    ok = (1.0 - fpr) >= min_specificity - 1e-12
    if not np.any(ok) or np.isnan(tpr).any():
        return OperatingPoint(math.nan, math.nan, math.nan)
    # Among points with the best tpr, the first has the lowest fpr.
    i = np.flatnonzero(ok)[np.argmax(tpr[ok])]
    return OperatingPoint(float(thr[i]), float(tpr[i]), float(1.0 - fpr[i]))


def specificity_at_sensitivity(
    y: np.ndarray | Sequence[int], scores: np.ndarray | Sequence[float], min_sensitivity: float
) -> OperatingPoint:
    """Highest specificity over thresholds whose sensitivity is at least ``min_sensitivity``."""
    fpr, tpr, thr = roc_curve(y, scores)
    ok = tpr >= min_sensitivity - 1e-12
    if not np.any(ok) or np.isnan(fpr).any():
        return OperatingPoint(math.nan, math.nan, math.nan)
    i = np.flatnonzero(ok)[np.argmin(fpr[ok])]
    return OperatingPoint(float(thr[i]), float(tpr[i]), float(1.0 - fpr[i]))


def _cluster_index(groups: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample order grouped by cluster, each cluster's start in it, and its size."""
    _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    order = np.argsort(inverse, kind="mergesort")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return order, starts, counts


def bootstrap_ci(
    statistic: Callable[..., float],
    arrays: Sequence[np.ndarray],
    *,
    groups: np.ndarray | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> BootstrapResult:
    """Percentile bootstrap interval for ``statistic(*arrays)``.

    With ``groups`` (one id per sample, e.g. the case of each frame) whole
    clusters are drawn with replacement, because frames of one clip are
    correlated and resampling them one by one would give too narrow an
    interval. Resamples where the statistic is undefined (``nan``, e.g. one
    class only) are dropped and counted; the bounds are ``nan`` if none is left.
    """
    arrays = [np.asarray(a) for a in arrays]
    n = len(arrays[0])
    value = float(statistic(*arrays))
    rng = np.random.default_rng(seed)
    stats = np.full(n_resamples, np.nan)
    if groups is not None:
        order, starts, counts = _cluster_index(np.asarray(groups))
        n_clusters = len(counts)
    for b in range(n_resamples if n else 0):
        if groups is None:
            idx = rng.integers(0, n, n)
        else:
            pick = rng.integers(0, n_clusters, n_clusters)
            lens = counts[pick]
            # Positions of every member of each picked cluster, without a Python loop.
            offsets = np.repeat(starts[pick] - np.cumsum(lens) + lens, lens)
            idx = order[offsets + np.arange(int(lens.sum()))]
        stats[b] = statistic(*(a[idx] for a in arrays))
    good = stats[np.isfinite(stats)]
    if len(good) == 0:
        lo = hi = math.nan
    else:
        alpha = (1.0 - level) / 2.0
        lo, hi = (float(q) for q in np.quantile(good, [alpha, 1.0 - alpha]))
    unit = "sample" if groups is None else "cluster"
    return BootstrapResult(Interval(value, lo, hi), n_resamples, len(good), unit)


def bootstrap_auc(
    y: np.ndarray,
    scores: np.ndarray,
    *,
    groups: np.ndarray | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> BootstrapResult:
    """ROC AUC with a percentile bootstrap CI (cluster resampling when ``groups`` given)."""
    return bootstrap_ci(
        roc_auc,
        [_binary(y), np.asarray(scores, dtype=float)],
        groups=groups,
        n_resamples=n_resamples,
        seed=seed,
        level=level,
    )


def ppv_npv_at_prevalence(
    sensitivity: float, specificity: float, prevalence: float
) -> tuple[float, float]:
    """PPV and NPV that a test with this sensitivity/specificity would have at ``prevalence``.

    Bayes: PPV = se*p / (se*p + (1-sp)*(1-p)); NPV = sp*(1-p) / (sp*(1-p) + (1-se)*p).
    """
    se, sp, p = sensitivity, specificity, prevalence
    pos = se * p + (1.0 - sp) * (1.0 - p)
    neg = sp * (1.0 - p) + (1.0 - se) * p
    ppv = se * p / pos if pos > 0 else math.nan
    npv = sp * (1.0 - p) / neg if neg > 0 else math.nan
    return ppv, npv


@dataclass(frozen=True)
class BinaryStats:
    """Counts of a binary rule ``score >= threshold`` and the rates derived from them."""

    threshold: float
    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.tn + self.fn

    def sensitivity(self) -> Interval:
        return wilson_interval(self.tp, self.tp + self.fn)

    def specificity(self) -> Interval:
        return wilson_interval(self.tn, self.tn + self.fp)

    def ppv(self) -> Interval:
        return wilson_interval(self.tp, self.tp + self.fp)

    def npv(self) -> Interval:
        return wilson_interval(self.tn, self.tn + self.fn)

    def accuracy(self) -> Interval:
        return wilson_interval(self.tp + self.tn, self.n)

    def at_prevalence(self, prevalence: float) -> dict[str, Interval]:
        """PPV/NPV re-weighted to ``prevalence``.

        The bounds plug the Wilson bounds of sensitivity and specificity into
        Bayes' formula (PPV and NPV rise with both), so they are a conservative
        range, not an exact 95% interval.
        """
        se, sp = self.sensitivity(), self.specificity()
        ppv, npv = ppv_npv_at_prevalence(se.value, sp.value, prevalence)
        ppv_lo, npv_lo = ppv_npv_at_prevalence(se.lo, sp.lo, prevalence)
        ppv_hi, npv_hi = ppv_npv_at_prevalence(se.hi, sp.hi, prevalence)
        return {"ppv": Interval(ppv, ppv_lo, ppv_hi), "npv": Interval(npv, npv_lo, npv_hi)}

    def to_dict(self, prevalence: float | None = None) -> dict[str, object]:
        out: dict[str, object] = {
            "threshold": json_float(self.threshold),
            "tp": self.tp,
            "fp": self.fp,
            "tn": self.tn,
            "fn": self.fn,
            "observed_prevalence": json_float((self.tp + self.fn) / self.n if self.n else math.nan),
            "sensitivity": self.sensitivity().to_dict(),
            "specificity": self.specificity().to_dict(),
            "ppv": self.ppv().to_dict(),
            "npv": self.npv().to_dict(),
            "accuracy": self.accuracy().to_dict(),
        }
        if prevalence is not None:
            rew = self.at_prevalence(prevalence)
            out["reweighted"] = {
                "prevalence": prevalence,
                "ppv": rew["ppv"].to_dict(),
                "npv": rew["npv"].to_dict(),
            }
        return out


def binary_stats(
    y: np.ndarray | Sequence[int], scores: np.ndarray | Sequence[float], threshold: float
) -> BinaryStats:
    """Confusion counts of the rule ``score >= threshold`` against labels ``y``."""
    y = _binary(y)
    pred = np.asarray(scores, dtype=float) >= threshold
    tp = int(np.sum(pred & y))
    fp = int(np.sum(pred & ~y))
    fn = int(np.sum(~pred & y))
    tn = int(np.sum(~pred & ~y))
    return BinaryStats(float(threshold), tp, fp, tn, fn)


def confusion_matrix(
    y_true: np.ndarray | Sequence[int], y_pred: np.ndarray | Sequence[int], n_classes: int = 5
) -> np.ndarray:
    """Counts ``cm[true, predicted]`` for integer classes ``0..n_classes-1``."""
    t = np.asarray(y_true, dtype=int)
    p = np.asarray(y_pred, dtype=int)
    if t.shape != p.shape:
        raise ValueError("y_true and y_pred differ in length")
    if t.size and (t.min() < 0 or p.min() < 0 or t.max() >= n_classes or p.max() >= n_classes):
        raise ValueError(f"classes must be in 0..{n_classes - 1}")
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(
        n_classes, n_classes
    )


def quadratic_weighted_kappa(cm: np.ndarray) -> float:
    """Cohen's kappa with quadratic weights from a confusion matrix.

    kappa = 1 - sum(W*O) / sum(W*E), W_ij = (i-j)^2/(K-1)^2, E = row x column
    marginals / N. ``nan`` when the expected disagreement is zero (e.g. every
    label and prediction is the same single grade).
    """
    o = np.asarray(cm, dtype=float)
    k = o.shape[0]
    n = o.sum()
    if n == 0 or k < 2:
        return math.nan
    i, j = np.indices((k, k))
    w = (i - j) ** 2 / (k - 1) ** 2
    e = np.outer(o.sum(axis=1), o.sum(axis=0)) / n
    denom = float((w * e).sum())
    if denom == 0.0:
        return math.nan
    return float(1.0 - (w * o).sum() / denom)


def weighted_recall(
    grades: np.ndarray | Sequence[int],
    hits: np.ndarray | Sequence[bool],
    weights: Mapping[int, float],
) -> tuple[float, dict[int, float]]:
    """Mean of per-grade hit rates weighted by ``weights`` (e.g. the NICU grade mix).

    ``hits[i]`` says whether sample i counts as a success (detected, or graded
    right). Grades absent from the data are left out and the weights of the
    rest renormalised. Returns the weighted rate and the per-grade rates.
    """
    g = np.asarray(grades, dtype=int)
    h = np.asarray(hits, dtype=bool)
    per_grade: dict[int, float] = {}
    for grade in weights:
        mask = g == grade
        if mask.any():
            per_grade[grade] = float(h[mask].mean())
    total = sum(weights[k] for k in per_grade)
    if total <= 0:
        return math.nan, per_grade
    return float(sum(weights[k] * v for k, v in per_grade.items()) / total), per_grade


@dataclass(frozen=True)
class ReliabilityBin:
    """One equal-width bin of predicted probability."""

    lo: float
    hi: float
    count: int
    mean_predicted: float
    fraction_positive: float


def reliability_bins(
    y: np.ndarray | Sequence[int], probs: np.ndarray | Sequence[float], n_bins: int = 10
) -> list[ReliabilityBin]:
    """Equal-width bins over [0, 1] (the last one closed) with mean prediction and outcome."""
    y = _binary(y)
    p = np.clip(np.asarray(probs, dtype=float), 0.0, 1.0)
    idx = np.minimum((p * n_bins).astype(int), n_bins - 1)
    out = []
    for b in range(n_bins):
        m = idx == b
        cnt = int(m.sum())
        mean_p = float(p[m].mean()) if cnt else math.nan
        frac = float(y[m].mean()) if cnt else math.nan
        out.append(ReliabilityBin(b / n_bins, (b + 1) / n_bins, cnt, mean_p, frac))
    return out


def expected_calibration_error(bins: Sequence[ReliabilityBin]) -> float:
    """ECE = sum over bins of (n_b / N) * |fraction positive - mean predicted|."""
    n = sum(b.count for b in bins)
    if n == 0:
        return math.nan
    return float(
        sum(b.count * abs(b.fraction_positive - b.mean_predicted) for b in bins if b.count) / n
    )
