"""Pool several datasets' evaluations into one: every clip of every set, one report.

A model is best judged on many independent clips: two centres, or several
fresh phantom seeds. ``evaluate`` scores each dataset into its own report and
hands the results here; the pooled metrics are computed on the concatenated
per-clip and per-frame arrays with the same code (``summary``), so a pooled
number is what one evaluation of all those clips would give. Case ids become
``<set>/<case_id>`` and frame clusters stay per case, so the bootstrap
resamples clips and cases across every set. Each set's headline numbers are
kept under ``dataset.parts``, with a pointer to its own report.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pivh_live.errors import ConfigError
from pivh_live.evaluation import summary
from pivh_live.evaluation.evaluate import Predictions, SetResult, build_result


def set_names(dirs: Sequence[Path]) -> list[str]:
    """A distinct report sub-directory name per dataset: its directory name, numbered on clashes."""
    names: list[str] = []
    for d in dirs:
        base = d.resolve().name or "dataset"
        name, k = base, 2
        while name in names:
            name, k = f"{base}-{k}", k + 1
        names.append(name)
    return names


def _cat(arrays: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate(list(arrays))


def _part(s: SetResult) -> dict[str, Any]:
    """One set's identity and headline clip numbers, for the pooled report."""
    data, clip = s.result["dataset"], s.result["clip"]
    at_spec = clip["severe"]["at_specificity"].get("sensitivity") or {}
    return {
        "report": f"{s.name}/report.html",
        "path": data["path"],
        "name": data["name"],
        "seed": data["seed"],
        "n_cases": data["n_cases"],
        "clip_grade_counts": data["clip_grade_counts"],
        "clip_any_pivh_auc": clip["any_pivh"]["auc"]["value"],
        "clip_severe_sensitivity_at_spec_0_93": at_spec.get("value"),
        "clip_grade_qwk": clip["grade"]["qwk"]["value"],
        "targets_met": sum(bool(t["met"]) for t in s.result["targets"]),
        "n_targets": len(s.result["targets"]),
        "overlap_with_training": data["overlap_with_training"],
    }


def _pooled_dataset(sets: Sequence[SetResult], grade: np.ndarray) -> dict[str, Any]:
    datas = [s.result["dataset"] for s in sets]
    splits: Counter[str] = Counter()
    frame_counts: Counter[str] = Counter()
    for d in datas:
        splits.update(d["splits"])
        frame_counts.update(d["frame_grade_counts"])
    overlaps = [f"{s.name}: {d['overlap_with_training']}" for s, d in zip(sets, datas, strict=True)
                if d["overlap_with_training"]]  # fmt: skip
    return {
        "path": ", ".join(d["path"] for d in datas),
        "name": "pooled: " + ", ".join(s.name for s in sets),
        "seed": None,
        "n_cases": sum(d["n_cases"] for d in datas),
        "n_frames": len(grade),
        "n_labelled_frames": int((grade >= 0).sum()),
        "clip_grade_counts": np.sum([d["clip_grade_counts"] for d in datas], axis=0).tolist(),
        "frame_grade_counts": dict(frame_counts),
        "splits": dict(splits),
        "clips_below_exam_grade": sum(d["clips_below_exam_grade"] for d in datas),
        "overlap_with_training": "; ".join(overlaps) or None,
        "parts": [_part(s) for s in sets],
    }


def pool_sets(sets: Sequence[SetResult], bundle: Any, n_bootstrap: int, seed: int) -> SetResult:
    """The pooled evaluation of ``sets``, all scored by ``bundle`` with one engine and shifts."""
    if len(sets) < 2:
        raise ConfigError("pooling needs at least two datasets")
    engine, shifts = sets[0].result["settings"]["engine"], sets[0].result["settings"]["shifts"]
    offsets = np.cumsum([0] + [len(s.cases) for s in sets])[:-1]
    cases = [dataclasses.replace(c, case_id=f"{s.name}/{c.case_id}") for s in sets for c in s.cases]
    pred = Predictions(
        key="pooled",
        case_ids=tuple(c.case_id for c in cases),
        case_index=_cat([s.pred.case_index + off for s, off in zip(sets, offsets, strict=True)]),
        frame=_cat([s.pred.frame for s in sets]),
        t_s=_cat([s.pred.t_s for s in sets]),
        grade_probs=_cat([s.pred.grade_probs for s in sets]),
        p_valid=_cat([s.pred.p_valid for s in sets]),
        motion=_cat([s.pred.motion for s in sets]),
    )
    fa = summary.FrameArrays(
        pred.case_index,
        _cat([s.fa.visible_grade for s in sets]),
        _cat([s.fa.valid for s in sets]),
        pred.grade_probs,
        pred.p_valid,
    )
    assessable = [
        np.ones(len(s.ca.label_grade), bool) if s.ca.assessable is None else s.ca.assessable
        for s in sets
    ]
    ca = summary.ClipArrays(
        label_grade=_cat([s.ca.label_grade for s in sets]),
        pred_grade=_cat([s.ca.pred_grade for s in sets]),
        p_pivh=_cat([s.ca.p_pivh for s in sets]),
        p_severe=_cat([s.ca.p_severe for s in sets]),
        assessable=_cat(assessable),
    )
    clips = [r for s in sets for r in s.clips]
    dataset = _pooled_dataset(sets, fa.visible_grade)
    result = build_result(bundle, dataset, fa, ca, clips, cases, engine, shifts, n_bootstrap, seed)
    return SetResult("pooled", result, cases, pred, fa, ca, clips)
