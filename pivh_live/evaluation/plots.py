"""PNG plots for the evaluation report: ROC curves, confusion matrices, reliability.

Matplotlib is an optional extra (``report``). It is imported inside each
function and used through ``Figure`` + the Agg canvas, never pyplot, so no
global backend or figure state is touched. Each function returns PNG bytes.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pivh_live.evaluation import metrics as m
from pivh_live.evaluation import summary
from pivh_live.evaluation.metrics import ReliabilityBin
from pivh_live.frames import GRADE_NAMES

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RocSeries:
    """One ROC curve to draw, with its AUC for the legend."""

    label: str
    fpr: np.ndarray
    tpr: np.ndarray
    auc: float


def matplotlib_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _new_figure(width: float = 4.2, height: float = 4.0):  # -> matplotlib Figure
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _png(fig) -> bytes:  # fig: matplotlib Figure
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def roc_png(curves: Sequence[RocSeries], title: str) -> bytes:
    """ROC curves on one axes, with the chance diagonal."""
    fig = _new_figure()
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="0.7", lw=1, ls="--")
    for c in curves:
        if np.isnan(c.fpr).any() or np.isnan(c.tpr).any():
            continue  # one class absent: no curve to draw
        auc = "n/a" if not math.isfinite(c.auc) else f"{c.auc:.3f}"
        # Straight segments: a run of tied scores is a diagonal, as the AUC counts it.
        ax.plot(c.fpr, c.tpr, lw=1.6, label=f"{c.label} (AUC {auc})")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="1 - specificity", ylabel="sensitivity")
    ax.set_title(title, fontsize=10)
    ax.set_aspect("equal")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def confusion_png(cm: np.ndarray, title: str, labels: Sequence[str] = GRADE_NAMES) -> bytes:
    """Confusion matrix as counts, shaded by row share (recall per true grade)."""
    cm = np.asarray(cm)
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=float), where=rows > 0)
    fig = _new_figure()
    ax = fig.add_subplot()
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for (i, j), n in np.ndenumerate(cm):
        ax.text(
            j,
            i,
            str(n),
            ha="center",
            va="center",
            fontsize=8,
            color="white" if share[i, j] > 0.6 else "black",
        )
    ticks = range(len(labels))
    ax.set_xticks(ticks, labels)
    ax.set_yticks(ticks, labels)
    ax.set(xlabel="predicted grade", ylabel="true grade")
    ax.set_title(title, fontsize=10)
    return _png(fig)


def reliability_png(
    series: Sequence[tuple[str, Sequence[ReliabilityBin], float]], title: str
) -> bytes:
    """Reliability diagram: observed positive fraction vs mean predicted, per bin.

    ``series`` is (label, bins, ece) per curve; marker size grows with bin count.
    """
    fig = _new_figure()
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="0.7", lw=1, ls="--")
    for label, bins, ece in series:
        used = [b for b in bins if b.count]
        if not used:
            continue
        total = sum(b.count for b in used)
        x = [b.mean_predicted for b in used]
        y = [b.fraction_positive for b in used]
        sizes = [12 + 150 * b.count / total for b in used]
        ece_text = "n/a" if not math.isfinite(ece) else f"{ece:.3f}"
        lines = ax.plot(x, y, lw=1.2, label=f"{label} (ECE {ece_text})")
        ax.scatter(x, y, s=sizes, color=lines[0].get_color(), zorder=3)
    ax.set(
        xlim=(-0.02, 1.02),
        ylim=(-0.02, 1.02),
        xlabel="mean predicted p(PIVH)",
        ylabel="observed fraction with PIVH",
    )
    ax.set_title(title, fontsize=10)
    ax.set_aspect("equal")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", fontsize=8)
    return _png(fig)


def write_plots(
    out: Path, fa: summary.FrameArrays, ca: summary.ClipArrays, result: dict[str, Any]
) -> dict[str, bytes]:
    """PNG plots written to OUT and returned by caption; empty without matplotlib."""
    if not matplotlib_available():
        log.warning("matplotlib is not installed; skipping plots (pip install 'pivh-live[report]')")
        return {}
    lab = fa.visible_grade >= 0
    if ca.assessable is not None:
        ca = ca.subset(ca.assessable)  # as in the clip metrics
    t = ca.label_grade

    def roc(name: str, y: np.ndarray, s: np.ndarray) -> RocSeries:
        fpr, tpr, _ = m.roc_curve(y, s)
        return RocSeries(name, fpr, tpr, m.roc_auc(y, s))

    images = {
        "ROC any-PIVH": roc_png(
            [
                roc("clip", t >= 1, ca.p_pivh),
                roc("frame", fa.visible_grade[lab] >= 1, fa.p_pivh[lab]),
            ],
            "any PIVH (I-IV)",
        ),
        "ROC severe": roc_png(
            [
                roc("clip", t >= 3, ca.p_severe),
                roc("frame", fa.visible_grade[lab] >= 3, fa.p_severe[lab]),
            ],
            "severe (III-IV)",
        ),
        "confusion clip": confusion_png(
            np.array(result["clip"]["grade"]["confusion"]), "clip grade (smoothed)"
        ),
        "confusion frame": confusion_png(
            np.array(result["frame"]["grade"]["confusion"]), "frame grade (argmax)"
        ),
    }
    series = []
    for level, y, p in (
        ("clip", t >= 1, ca.p_pivh),
        ("frame", fa.visible_grade[lab] >= 1, fa.p_pivh[lab]),
    ):
        bins = m.reliability_bins(y, p, summary.ECE_BINS)
        series.append((level, bins, m.expected_calibration_error(bins)))
    images["reliability"] = reliability_png(series, "calibration of p(PIVH)")
    for caption, png in images.items():
        (out / f"{caption.replace(' ', '_').replace('-', '_').lower()}.png").write_bytes(png)
    return images
