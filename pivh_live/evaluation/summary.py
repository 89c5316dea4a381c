"""Which metrics are reported, at frame and clip level, computed from plain arrays.

No I/O and no model here: ``evaluate`` runs the engine and the smoother and
hands the resulting arrays to ``frame_metrics`` / ``clip_metrics``. The output
is JSON-ready (``nan`` becomes ``null``). Definitions: docs/evaluation.md.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from pivh_live import __version__
from pivh_live.evaluation import metrics as m

log = logging.getLogger(__name__)

ECE_BINS = 10
SEVERE_MIN_SPECIFICITY = 0.93
SEVERE_MIN_SENSITIVITY = 0.95
TARGET_CLIP_AUC = 0.98
TARGET_QWK = 0.90


@dataclass(frozen=True)
class FrameArrays:
    """Per-frame labels and raw model outputs, one row per decoded frame.

    ``visible_grade``: Papile grade visible in the frame, -1 no brain shown,
    -2 no per-frame labels for the case. ``valid``: 1/0, -1 unlabelled.
    """

    case_index: np.ndarray
    visible_grade: np.ndarray
    valid: np.ndarray
    grade_probs: np.ndarray
    p_valid: np.ndarray

    @property
    def p_pivh(self) -> np.ndarray:
        return 1.0 - self.grade_probs[:, 0]

    @property
    def p_severe(self) -> np.ndarray:
        return self.grade_probs[:, 3:].sum(axis=1)


@dataclass(frozen=True)
class ClipArrays:
    """Per-clip labels and the smoothed clip result of the live pipeline's logic.

    ``assessable`` is False for clips where no frame was valid (the display
    said "no valid image"); None means every clip was assessable.
    """

    label_grade: np.ndarray
    pred_grade: np.ndarray
    p_pivh: np.ndarray
    p_severe: np.ndarray
    assessable: np.ndarray | None = None

    def subset(self, keep: np.ndarray) -> ClipArrays:
        return ClipArrays(
            self.label_grade[keep], self.pred_grade[keep], self.p_pivh[keep], self.p_severe[keep]
        )


def _qwk(t: np.ndarray, p: np.ndarray) -> float:
    return m.quadratic_weighted_kappa(m.confusion_matrix(t, p))


def _grade_block(
    t: np.ndarray, p: np.ndarray, groups: np.ndarray | None, n_boot: int, seed: int
) -> dict[str, object]:
    cm = m.confusion_matrix(t, p)
    qwk = m.bootstrap_ci(_qwk, [t, p], groups=groups, n_resamples=n_boot, seed=seed)
    weighted, per_grade = m.weighted_recall(t, t == p, m.NICU_GRADE_MIX)
    return {
        "n": len(t),
        "confusion": cm.tolist(),
        "qwk": qwk.to_dict(),
        "accuracy": m.wilson_interval(int(np.trace(cm)), int(cm.sum())).to_dict(),
        "nicu_weighted_accuracy": {
            "value": m.json_float(weighted),
            "per_grade_recall": {str(k): v for k, v in per_grade.items()},
        },
    }


def _calibration_block(y: np.ndarray, p: np.ndarray) -> dict[str, object]:
    bins = m.reliability_bins(y, p, ECE_BINS)
    return {
        "ece": m.json_float(m.expected_calibration_error(bins)),
        "n_bins": ECE_BINS,
        "bins": [
            {
                "lo": b.lo,
                "hi": b.hi,
                "count": b.count,
                "mean_predicted": m.json_float(b.mean_predicted),
                "fraction_positive": m.json_float(b.fraction_positive),
            }
            for b in bins
        ],
    }


def _operating_point(y: np.ndarray, op: m.OperatingPoint, minimum: dict[str, float]) -> dict:
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    out: dict[str, object] = {**minimum, "threshold": m.json_float(op.threshold)}
    if math.isnan(op.sensitivity):
        return out | {"sensitivity": None, "specificity": None}
    sens = m.wilson_interval(round(op.sensitivity * n_pos), n_pos)
    spec = m.wilson_interval(round(op.specificity * n_neg), n_neg)
    return out | {"sensitivity": sens.to_dict(), "specificity": spec.to_dict()}


def frame_metrics(
    fa: FrameArrays, thresholds: dict[str, float], n_bootstrap: int, seed: int
) -> dict[str, object]:
    """Per-frame metrics on raw (unsmoothed) outputs of frames with a grade label.

    CIs resample whole cases: frames of one clip are correlated.
    """
    lab = fa.visible_grade >= 0
    g, case = fa.visible_grade[lab], fa.case_index[lab]
    p_pivh, p_sev = fa.p_pivh[lab], fa.p_severe[lab]
    y_any, y_sev = g >= 1, g >= 3
    boot = {"groups": case, "n_resamples": n_bootstrap, "seed": seed}
    out: dict[str, object] = {"n_frames": int(lab.sum()), "n_cases": len(np.unique(case))}
    out["any_pivh"] = {
        "auc": m.bootstrap_auc(y_any, p_pivh, **boot).to_dict(),
        "at_threshold": m.binary_stats(y_any, p_pivh, thresholds["pivh"]).to_dict(),
    }
    out["severe"] = {
        "auc": m.bootstrap_auc(y_sev, p_sev, **boot).to_dict(),
        "at_threshold": m.binary_stats(y_sev, p_sev, thresholds["severe"]).to_dict(),
    }
    pred = np.argmax(fa.grade_probs[lab], axis=1)
    out["grade"] = _grade_block(g, pred, case, n_bootstrap, seed)
    out["calibration"] = _calibration_block(y_any, p_pivh)

    has_valid = fa.valid >= 0
    y_valid = fa.valid[has_valid] == 1
    pv = fa.p_valid[has_valid]
    out["validity"] = {
        "n_frames": int(has_valid.sum()),
        "n_invalid": int((~y_valid).sum()),
        "auc": m.bootstrap_auc(
            y_valid, pv, groups=fa.case_index[has_valid], n_resamples=n_bootstrap, seed=seed
        ).to_dict(),
        "at_threshold": m.binary_stats(y_valid, pv, thresholds["valid"]).to_dict(),
    }
    return out


def _worst_case(ca: ClipArrays, ok: np.ndarray, min_grade: int, threshold: float) -> dict:
    """Counts with every unassessable clip called wrong (a missed bleed, a false alarm)."""
    y = ca.label_grade >= min_grade
    score = ca.p_pivh if min_grade == 1 else ca.p_severe
    called = np.where(ok, score >= threshold, ~y)
    return m.binary_stats(y, called, 0.5).to_dict()


def clip_metrics(
    ca: ClipArrays, thresholds: dict[str, float], n_bootstrap: int, seed: int
) -> dict[str, object]:
    """Per-clip metrics on the smoothed clip result; CIs resample clips.

    Clips with no valid frame got no answer from the display, not a "normal"
    one: they are left out of the metrics, counted per label grade, and a
    worst case (each of them called wrong) is given for the threshold counts.
    """
    ok = np.ones(len(ca.label_grade), bool) if ca.assessable is None else ca.assessable
    unassessable = {
        "n": int((~ok).sum()),
        "by_label_grade": np.bincount(ca.label_grade[~ok], minlength=5).tolist(),
        "any_pivh_worst_case": _worst_case(ca, ok, 1, thresholds["pivh"]),
        "severe_worst_case": _worst_case(ca, ok, 3, thresholds["severe"]),
    }
    ca = ca.subset(ok)
    t = ca.label_grade
    y_any, y_sev = t >= 1, t >= 3
    boot = {"n_resamples": n_bootstrap, "seed": seed}
    any_stats = m.binary_stats(y_any, ca.p_pivh, thresholds["pivh"])
    called = ca.p_pivh >= thresholds["pivh"]
    w_sens, per_sens = m.weighted_recall(t, called, {k: m.NICU_GRADE_MIX[k] for k in (1, 2, 3, 4)})
    w_acc, _ = m.weighted_recall(t, called == y_any, m.NICU_GRADE_MIX)
    out: dict[str, object] = {"n_clips": len(t), "unassessable": unassessable}
    out["any_pivh"] = {
        "auc": m.bootstrap_auc(y_any, ca.p_pivh, **boot).to_dict(),
        "at_threshold": any_stats.to_dict(prevalence=m.NICU_PIVH_PREVALENCE),
        "nicu_weighted_sensitivity": {
            "value": m.json_float(w_sens),
            "per_grade": {str(k): v for k, v in per_sens.items()},
        },
        "nicu_weighted_accuracy": m.json_float(w_acc),
        # What the live display would show: the clip grade's own yes/no.
        "clip_grade_call": m.binary_stats(y_any, ca.pred_grade >= 1, 0.5).to_dict(
            prevalence=m.NICU_PIVH_PREVALENCE
        ),
    }
    sev_called = ca.p_severe >= thresholds["severe"]
    w_sev, per_sev = m.weighted_recall(t, sev_called, {k: m.NICU_GRADE_MIX[k] for k in (3, 4)})
    out["severe"] = {
        "auc": m.bootstrap_auc(y_sev, ca.p_severe, **boot).to_dict(),
        "at_threshold": m.binary_stats(y_sev, ca.p_severe, thresholds["severe"]).to_dict(
            prevalence=m.NICU_SEVERE_PREVALENCE
        ),
        "nicu_weighted_sensitivity": {
            "value": m.json_float(w_sev),
            "per_grade": {str(k): v for k, v in per_sev.items()},
        },
        "at_specificity": _operating_point(
            y_sev,
            m.sensitivity_at_specificity(y_sev, ca.p_severe, SEVERE_MIN_SPECIFICITY),
            {"min_specificity": SEVERE_MIN_SPECIFICITY},
        ),
        "at_sensitivity": _operating_point(
            y_sev,
            m.specificity_at_sensitivity(y_sev, ca.p_severe, SEVERE_MIN_SENSITIVITY),
            {"min_sensitivity": SEVERE_MIN_SENSITIVITY},
        ),
    }
    out["grade"] = _grade_block(t, ca.pred_grade, None, n_bootstrap, seed)
    out["calibration"] = _calibration_block(y_any, ca.p_pivh)
    return out


def _value(d: object) -> float:
    v = d.get("value") if isinstance(d, dict) else None
    return math.nan if v is None else float(v)


def targets(clip: dict) -> list[dict[str, object]]:
    """The issue's targets, checked as facts on the clip-level results (not tuned)."""
    auc = clip["any_pivh"]["auc"]
    at_spec = clip["severe"]["at_specificity"]
    at_thr = clip["severe"]["at_threshold"]
    qwk = clip["grade"]["qwk"]
    sens_thr, spec_thr = _value(at_thr["sensitivity"]), _value(at_thr["specificity"])
    rows = [
        (
            "any-PIVH clip AUC",
            ">= 0.98",
            _value(auc),
            auc["lo"],
            _value(auc) >= TARGET_CLIP_AUC,
            "",
        ),
        (
            "severe sensitivity at specificity >= 0.93 (threshold from this ROC)",
            ">= 0.95",
            _value(at_spec.get("sensitivity")),
            (at_spec.get("sensitivity") or {}).get("lo"),
            _value(at_spec.get("sensitivity")) >= SEVERE_MIN_SENSITIVITY,
            "" if at_spec["threshold"] is None else f"threshold {at_spec['threshold']:.3f}",
        ),
        (
            "severe sensitivity / specificity at the bundle's threshold",
            ">= 0.95 / >= 0.93",
            sens_thr,
            at_thr["sensitivity"]["lo"],
            sens_thr >= SEVERE_MIN_SENSITIVITY and spec_thr >= SEVERE_MIN_SPECIFICITY,
            f"specificity {spec_thr:.3f}",
        ),
        ("clip grade QWK", ">= 0.90", _value(qwk), qwk["lo"], _value(qwk) >= TARGET_QWK, ""),
    ]
    return [
        {
            "name": n,
            "target": tgt,
            "value": m.json_float(v),
            "ci_lo": lo,
            "met": bool(met),
            "detail": detail,
        }
        for n, tgt, v, lo, met, detail in rows
    ]


def card_summary(result: dict[str, Any]) -> dict[str, Any]:
    """The compact block written into the bundle card's metrics under "evaluation"."""
    clip, data = result["clip"], result["dataset"]
    at_thr = clip["severe"]["at_threshold"]
    return {
        "evaluation": {
            "dataset": data["name"],
            "dataset_seed": data["seed"],
            "n_cases": data["n_cases"],
            "n_frames": data["n_frames"],
            "engine": result["settings"]["engine"],
            "clip_any_pivh_auc": _interval(clip["any_pivh"]["auc"]),
            "clip_severe_auc": _interval(clip["severe"]["auc"]),
            "clip_severe_sensitivity": at_thr["sensitivity"]["value"],
            "clip_severe_specificity": at_thr["specificity"]["value"],
            "clip_severe_sensitivity_at_spec_0_93": (
                clip["severe"]["at_specificity"].get("sensitivity") or {}
            ).get("value"),
            "clip_grade_qwk": _interval(clip["grade"]["qwk"]),
            "frame_any_pivh_auc": _interval(result["frame"]["any_pivh"]["auc"]),
            "pivh_live_version": __version__,
        }
    }


def _interval(d: dict[str, Any]) -> dict[str, Any]:
    return {"value": d["value"], "lo": d["lo"], "hi": d["hi"]}


def log_summary(result: dict[str, Any]) -> None:
    clip = result["clip"]

    def fmt(d: dict[str, Any] | None) -> str:
        if not d or d.get("value") is None:
            return "n/a"
        if d.get("lo") is None:
            return f"{d['value']:.3f}"
        return f"{d['value']:.3f} [{d['lo']:.3f}, {d['hi']:.3f}]"

    log.info(
        "clip any-PIVH AUC %s; sens %s spec %s at p>=%.2f",
        fmt(clip["any_pivh"]["auc"]),
        fmt(clip["any_pivh"]["at_threshold"]["sensitivity"]),
        fmt(clip["any_pivh"]["at_threshold"]["specificity"]),
        clip["any_pivh"]["at_threshold"]["threshold"],
    )
    log.info(
        "clip severe AUC %s; sens %s spec %s; grade QWK %s",
        fmt(clip["severe"]["auc"]),
        fmt(clip["severe"]["at_threshold"]["sensitivity"]),
        fmt(clip["severe"]["at_threshold"]["specificity"]),
        fmt(clip["grade"]["qwk"]),
    )
    log.info("frame any-PIVH AUC %s", fmt(result["frame"]["any_pivh"]["auc"]))
    for t in result["targets"]:
        log.info("target %s %s: %s", t["name"], t["target"], "met" if t["met"] else "NOT met")
