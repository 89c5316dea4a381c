"""Prior correction of the grade head: from the training frames' grade mix to a deployment's.

A classifier trained on one mix of classes gives posteriors for that mix. The
training pool here is enriched (balanced phantom sets) and the grade loss
weights classes by ``(N / (5 n_k)) ** power``, so the network's effective
prior is ``pi_train ** (1 - power)`` (normalised): far more lesion frames than
a NICU scan shows. Bayes' rule moves the posteriors to a target prior
``pi_target`` by adding ``log(pi_target / pi_effective)`` to the grade logits
before the softmax (post-hoc logit adjustment; Saerens et al., Neural Comput
2002; Menon et al., ICLR 2021). The offsets are stored in the bundle card and
added by every engine (docs/model_bundle.md, docs/training.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pivh_live.errors import DatasetError
from pivh_live.frames import N_GRADES


def frame_grade_counts(cases: Sequence[Any], stride: int = 1) -> np.ndarray:
    """Graded frames per grade 0-IV over ``cases``, counting every ``stride``-th frame.

    The frames kept are those training keeps (`training.data.load_frameset`):
    frame 0, stride, 2 x stride, ... that have a label, graded when valid with a
    visible grade. Needs each case's frames.csv (no video is decoded).
    """
    from pivh_live.dataset import load_frame_labels
    from pivh_live.training.data import frame_targets

    counts = np.zeros(N_GRADES, dtype=np.int64)
    for case in cases:
        labels = load_frame_labels(case)
        if labels is None:
            raise DatasetError(
                f"case {case.case_id} has no frames.csv; a frame-level grade prior needs "
                "per-frame labels (docs/dataset.md)"
            )
        frames = np.asarray(labels.frame, dtype=np.int64)
        n = int(frames.max()) + 1 if frames.size else 0
        grade, valid, _ = frame_targets(case, n)
        keep = np.arange(0, n, max(1, stride))
        keep = keep[valid[keep] >= 0]
        g = grade[keep]
        counts += np.bincount(g[g >= 0].astype(np.int64), minlength=N_GRADES)[:N_GRADES]
    return counts


def normalised(counts: Sequence[float], what: str) -> np.ndarray:
    """Counts or frequencies -> a probability vector; every grade must be present."""
    p = np.asarray(counts, dtype=np.float64)
    if p.shape != (N_GRADES,) or not np.all(np.isfinite(p)) or np.any(p <= 0):
        raise DatasetError(
            f"{what} needs a positive share for each of the {N_GRADES} grades, got "
            f"{np.round(p, 4).tolist()}; use data with frames of every grade"
        )
    return p / p.sum()


def effective_prior(train_prior: Sequence[float], class_weight_power: float) -> np.ndarray:
    """The prior the weighted loss trains for: ``pi ** (1 - power)``, normalised."""
    p = normalised(train_prior, "the training prior") ** (1.0 - float(class_weight_power))
    return p / p.sum()


def logit_offsets(
    train_prior: Sequence[float], target_prior: Sequence[float], class_weight_power: float
) -> list[float]:
    """Per-grade offsets ``log(target / effective)``, shifted so grade 0's is 0."""
    eff = effective_prior(train_prior, class_weight_power)
    target = normalised(target_prior, "the target prior")
    raw = np.log(target) - np.log(eff)
    return [round(float(v - raw[0]), 6) for v in raw]
