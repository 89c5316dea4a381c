"""OUT/frames.csv and OUT/clips.csv: one row per decoded frame and per clip (docs/evaluation.md)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pivh_live.evaluation import summary
from pivh_live.frames import N_GRADES

if TYPE_CHECKING:
    from pivh_live.evaluation.evaluate import Predictions


def write_tables(
    out: Path, cases: list[Any], pred: Predictions, fa: summary.FrameArrays, clips: list[Any]
) -> None:
    """Write OUT/frames.csv (raw per-frame outputs) and OUT/clips.csv (smoothed clip results)."""
    p_pivh, p_sev = fa.p_pivh, fa.p_severe
    with open(out / "frames.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "case_id",
                "frame",
                "t_s",
                "visible_grade",
                "valid",
                "p_pivh",
                "p_severe",
                "p_valid",
                *(f"p_grade{g}" for g in range(N_GRADES)),
            ]
        )
        for i in range(len(pred.frame)):
            w.writerow(
                [
                    pred.case_ids[pred.case_index[i]],
                    int(pred.frame[i]),
                    f"{pred.t_s[i]:.4f}",
                    "" if fa.visible_grade[i] == -2 else int(fa.visible_grade[i]),
                    "" if fa.valid[i] < 0 else int(fa.valid[i]),
                    f"{p_pivh[i]:.6f}",
                    f"{p_sev[i]:.6f}",
                    f"{pred.p_valid[i]:.6f}",
                    *(f"{v:.6f}" for v in pred.grade_probs[i]),
                ]
            )
    with open(out / "clips.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "case_id",
                "clip_grade",
                "predicted_grade",
                "p_pivh",
                "p_severe",
                "frames",
                "valid_frames",
                "alert_frames",
                "exam_grade",
            ]
        )
        for case, r in zip(cases, clips, strict=True):
            exam = getattr(case, "exam_grade", None)
            w.writerow(
                [
                    case.case_id,
                    int(case.clip_grade),
                    r.clip_grade,
                    f"{r.p_pivh:.5f}",
                    f"{r.p_severe:.5f}",
                    r.frames,
                    r.valid_frames,
                    r.alert_frames,
                    "" if exam is None else int(exam),
                ]
            )
