"""Per-epoch validation: frame and clip metrics, and the operating thresholds.

The clip results come from ``pivh_live.smoothing.summarize_clip``, the live
smoother, so validation measures what the display would show. The any-PIVH
threshold is picked on that same rule: the highest threshold at which the
smoothed clip call (an alert, grade >= I) finds ``target_sensitivity`` of the
positive validation clips, not the threshold on each clip's peak score, which
the call must also hold for ``onset_min_s`` (docs/training.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from pivh_live.training.config import TrainConfig
from pivh_live.training.data import FrameSet

THRESHOLD_RANGE = (0.01, 0.99)  # SmoothingConfig needs thresholds strictly inside (0, 1)
THRESHOLD_STEP = 1e-5  # thresholds are rounded down to this (math.floor(thr * 1e5) / 1e5)

GradesAt = Callable[[float, float], np.ndarray]


def predict(
    model: Any,
    frames: FrameSet,
    device: Any,
    batch_size: int = 64,
    tta: str = "none",
    norm: str = "none",
) -> dict[str, np.ndarray]:
    """Grade probabilities (N, 5) and P(valid) (N,) for every frame of a FrameSet.

    ``tta`` "hflip" averages each frame's probabilities with its mirror's, as
    the engines do for a bundle exported with it (`Engine.score_preprocessed`).
    ``norm`` maps gray levels to input values as the bundle's engines will
    (`pivh_live.preprocess.normalize`).
    """
    import torch

    from pivh_live.preprocess import normalize

    model.eval()
    probs, valid = [], []
    with torch.inference_mode():
        for start in range(0, len(frames), batch_size):
            chunk = frames.images[start : start + batch_size]
            if norm == "none":
                x = torch.from_numpy(chunk).to(device).to(torch.float32).div_(255.0)
            else:
                x = torch.from_numpy(np.stack([normalize(image, norm) for image in chunk]))
                x = x.to(device)
            x = x.unsqueeze(1)
            views = [x, torch.flip(x, dims=(3,))] if tta == "hflip" else [x]
            p_grade, p_valid = 0.0, 0.0
            for view in views:
                grade_logits, valid_logit, _ = model(
                    view.contiguous(memory_format=torch.channels_last)
                )
                p_grade = p_grade + torch.softmax(grade_logits.float(), dim=1)
                p_valid = p_valid + torch.sigmoid(valid_logit.float())[:, 0]
            probs.append((p_grade / len(views)).cpu().numpy())
            valid.append((p_valid / len(views)).cpu().numpy())
    return {"grade_probs": np.concatenate(probs), "p_valid": np.concatenate(valid)}


def validate(
    model: Any, frames: FrameSet, config: TrainConfig, device: Any
) -> tuple[dict[str, float], dict[str, float]]:
    """Frame and clip metrics on a validation FrameSet, and the operating thresholds.

    The clip grade metrics (kappa, accuracy, the call's sensitivity and
    specificity) are those of the smoother run with the picked thresholds:
    the rule the bundle ships with.
    """
    pred = predict(model, frames, device, tta=config.model.tta, norm=config.model.norm)
    return validate_predictions(frames, pred, config)


def validate_predictions(
    frames: FrameSet, pred: dict[str, np.ndarray], config: TrainConfig
) -> tuple[dict[str, float], dict[str, float]]:
    """`validate` on given per-frame predictions ("grade_probs" (N, 5), "p_valid" (N,)).

    Used by `validate` (the torch model in training) and by the prior
    correction (`pivh_live.training.recalibrate`, a bundle's engine).
    """
    from pivh_live.evaluation.metrics import confusion_matrix, quadratic_weighted_kappa

    metrics = frame_metrics(frames, pred)
    clips = clip_results(frames, pred)
    metrics.update(clips["metrics"])

    def grades_at(pivh: float, severe: float) -> np.ndarray:
        return clip_grades(frames, pred, pivh, severe)

    thresholds = pick_thresholds(
        clips, config.target_sensitivity, config.severe_min_specificity, grades_at
    )
    truth = clips["truth"]
    grade = grades_at(thresholds["pivh"], thresholds["severe"])
    metrics.update(
        {
            "clip_kappa": _r(quadratic_weighted_kappa(confusion_matrix(truth, grade))),
            "clip_acc": _r(np.mean(grade == truth)),
            "clip_sensitivity": _rate(grade[truth >= 1] >= 1),
            "clip_specificity": _rate(grade[truth == 0] == 0),
        }
    )
    score = _nz(metrics["clip_auc"]) + _nz(metrics["clip_kappa"])
    metrics["score"] = round(score, 5)
    return metrics, thresholds


def _nz(x: float) -> float:
    return 0.0 if math.isnan(x) else x


def _r(x: float) -> float:
    return round(float(x), 5)


def _rate(hits: np.ndarray) -> float:
    return _r(np.mean(hits)) if hits.size else math.nan


def frame_metrics(frames: FrameSet, pred: dict[str, np.ndarray]) -> dict[str, float]:
    """Any-PIVH AUC, grade accuracy and quadratic kappa on graded frames; valid accuracy."""
    from pivh_live.evaluation.metrics import confusion_matrix, quadratic_weighted_kappa, roc_auc

    probs, p_valid = pred["grade_probs"], pred["p_valid"]
    graded = frames.grade >= 0
    g = frames.grade[graded].astype(np.int64)
    guess = probs[graded].argmax(axis=1)
    known = frames.valid >= 0
    valid_ok = (p_valid[known] >= 0.5) == (frames.valid[known] == 1)
    return {
        "frame_auc": _r(roc_auc(g >= 1, 1.0 - probs[graded, 0])),
        "frame_acc": _r(np.mean(guess == g)) if g.size else math.nan,
        "frame_kappa": _r(quadratic_weighted_kappa(confusion_matrix(g, guess))),
        "valid_acc": _r(np.mean(valid_ok)) if valid_ok.size else math.nan,
    }


def clip_results(frames: FrameSet, pred: dict[str, np.ndarray]) -> dict[str, Any]:
    """Each clip's truth and peak smoothed scores (``summarize_clip``, default settings).

    ``p_pivh`` / ``p_severe`` are the clip's highest smoothed P(grade >= I) /
    P(grade >= III), the scores whose AUCs are reported; they do not depend
    on the thresholds.
    """
    from pivh_live.evaluation.metrics import roc_auc
    from pivh_live.smoothing import summarize_clip

    truth, p_pivh, p_severe = [], [], []
    for ci, case in enumerate(frames.cases):
        rows = frames.case_rows(ci)
        result = summarize_clip(frames.t_s[rows], pred["grade_probs"][rows], pred["p_valid"][rows])
        truth.append(case.clip_grade)
        p_pivh.append(result.p_pivh)
        p_severe.append(result.p_severe)
    t = np.asarray(truth, dtype=np.int64)
    metrics = {
        "clip_auc": _r(roc_auc(t >= 1, p_pivh)),
        "clip_severe_auc": _r(roc_auc(t >= 3, p_severe)),
    }
    return {
        "truth": t,
        "p_pivh": np.asarray(p_pivh),
        "p_severe": np.asarray(p_severe),
        "metrics": metrics,
    }


def clip_grades(
    frames: FrameSet, pred: dict[str, np.ndarray], pivh: float, severe: float
) -> np.ndarray:
    """Each clip's worst smoothed grade (0-4) with the given operating thresholds."""
    from pivh_live.smoothing import SmoothingConfig, summarize_clip

    config = SmoothingConfig.from_thresholds(pivh, severe)
    out = np.empty(len(frames.cases), dtype=np.int64)
    for ci in range(len(frames.cases)):
        rows = frames.case_rows(ci)
        result = summarize_clip(
            frames.t_s[rows], pred["grade_probs"][rows], pred["p_valid"][rows], config
        )
        out[ci] = max(result.clip_grade, 0)
    return out


def pick_thresholds(
    clips: dict[str, Any],
    target: float,
    severe_min_spec: float = 0.93,
    grades_at: GradesAt | None = None,
) -> dict[str, float]:
    """Clip-level operating thresholds on the validation clips.

    ``severe``: the threshold on clip p_severe with the highest severe
    (grade >= III) sensitivity among those keeping specificity >=
    ``severe_min_spec``; it also sets where the displayed grade reaches III,
    so it must not be bought with specificity (a high-sensitivity severe
    threshold calls most normal clips grade III).

    ``pivh``: a screening alert must not miss bleeds. With ``grades_at``
    (clip grades for given pivh and severe thresholds, from the smoother) it
    is the highest threshold whose smoothed call (clip grade >= I) has
    sensitivity >= ``target`` for any PIVH, with the severe threshold above;
    without it, the threshold on clip p_pivh with the highest specificity
    among those giving sensitivity >= ``target``. The call needs the smoothed
    score to hold above the threshold for ``onset_min_s``, so a threshold
    picked on the peak score alone lets through fewer clips than ``target``.

    Without positives or negatives a threshold falls back to 0.5. Rounded
    down to ``THRESHOLD_STEP``, clipped to ``THRESHOLD_RANGE``.
    """
    from pivh_live.evaluation.metrics import (
        sensitivity_at_specificity,
        specificity_at_sensitivity,
    )

    truth = clips["truth"]
    severe = _clip_threshold(
        sensitivity_at_specificity(truth >= 3, clips["p_severe"], severe_min_spec).threshold
    )
    positive = truth >= 1
    if grades_at is not None and positive.any() and (~positive).any():

        def sensitive(thr: float) -> bool:
            return float(np.mean(grades_at(thr, severe)[positive] >= 1)) >= target

        pivh = _highest_passing(sensitive)
    else:
        point = specificity_at_sensitivity(positive, clips["p_pivh"], target)
        pivh = _clip_threshold(point.threshold)
    return {"pivh": pivh, "severe": severe, "valid": 0.5}


def _clip_threshold(thr: float) -> float:
    thr = thr if math.isfinite(thr) else 0.5
    # Round down: a clip scoring exactly the threshold must stay above it.
    thr = math.floor(thr * 1e5) / 1e5
    return min(max(thr, THRESHOLD_RANGE[0]), THRESHOLD_RANGE[1])


def _highest_passing(passes: Callable[[float], bool]) -> float:
    """The highest threshold in THRESHOLD_RANGE that passes, to THRESHOLD_STEP.

    ``passes`` must be monotone: true at every threshold below one that
    passes (a lower alert threshold only adds frames above it). If none
    passes, the lowest threshold.
    """
    lo, hi = THRESHOLD_RANGE
    if passes(hi):
        return hi
    if not passes(lo):
        return lo
    while hi - lo > THRESHOLD_STEP:
        mid = (lo + hi) / 2.0
        if passes(mid):
            lo = mid
        else:
            hi = mid
    # Rounding down keeps it passing (monotone).
    return _clip_threshold(lo)
