"""``pivh-live evaluate``: run a bundle over a dataset and report honest metrics.

Every frame of every case goes through the engine (raw outputs cached in
OUT/predictions.npz); clip results come from ``smoothing.summarize_clip``, the
live pipeline's own temporal logic. Writes OUT/metrics.json, OUT/frames.csv,
OUT/clips.csv, PNG plots and the self-contained OUT/report.html.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import zipfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pivh_live import DISCLAIMER, __version__
from pivh_live.errors import ConfigError, DatasetError, EngineError
from pivh_live.evaluation import metrics as m
from pivh_live.evaluation import plots, summary
from pivh_live.evaluation.disagreements import (
    DEFAULT_LIMIT,
    clear_gallery,
    find_disagreements,
    write_gallery,
)
from pivh_live.evaluation.report import render_report
from pivh_live.evaluation.shifts import Shift, apply_shifts, parse_shift
from pivh_live.evaluation.tables import write_tables
from pivh_live.frames import N_GRADES

log = logging.getLogger(__name__)

PREDICTIONS_FILE = "predictions.npz"
CACHE_VERSION = 3


@dataclass(frozen=True)
class Predictions:
    """Raw engine outputs for every decoded frame, in case order."""

    key: str
    case_ids: tuple[str, ...]
    case_index: np.ndarray  # (N,) int
    frame: np.ndarray  # (N,) int
    t_s: np.ndarray  # (N,) float
    grade_probs: np.ndarray  # (N, 5) float32
    p_valid: np.ndarray  # (N,) float32
    motion: np.ndarray  # (N,) mean |gray difference| to the previous frame, NaN for the first

    def save(self, path: Path) -> None:
        np.savez_compressed(
            path,
            key=np.array(self.key),
            case_ids=np.array(self.case_ids, dtype=str),
            case_index=self.case_index,
            frame=self.frame,
            t_s=self.t_s,
            grade_probs=self.grade_probs,
            p_valid=self.p_valid,
            motion=self.motion,
        )

    @classmethod
    def load(cls, path: Path) -> Predictions:
        with np.load(path, allow_pickle=False) as z:
            return cls(
                key=str(z["key"]),
                case_ids=tuple(str(c) for c in z["case_ids"]),
                case_index=z["case_index"],
                frame=z["frame"],
                t_s=z["t_s"],
                grade_probs=z["grade_probs"],
                p_valid=z["p_valid"],
                motion=z["motion"],
            )


def _load_cache(path: Path) -> Predictions | None:
    try:
        return Predictions.load(path)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
        log.warning("ignoring unreadable %s (%s); scoring again", path, e)
        return None


def _cache_key(bundle: Any, engine: str, cases: list[Any], shifts: Sequence[Shift] = ()) -> str:
    """Bundle hash + engine + shifts + each case's media identity and roi: a change re-scores."""
    media = []
    for case in cases:
        path = Path(case.media)
        st = path.stat() if path.exists() else None
        size, mtime = (st.st_size, st.st_mtime_ns) if st else (-1, -1)
        media.append([case.case_id, path.name, size, mtime, repr(case.roi)])
    key: dict[str, Any] = {
        "v": CACHE_VERSION, "sha256": bundle.onnx_sha256, "engine": engine, "media": media
    }  # fmt: skip
    if shifts:  # absent without shifts, so unshifted caches stay valid
        key["shifts"] = [s.text for s in shifts]
    if bundle.norm != "none":  # likewise: the card's norm changes what the engine scores
        key["norm"] = bundle.norm
    if bundle.tta != "none":  # ... and so do its test-time augmentation
        key["tta"] = bundle.tta
    if bundle.grade_logit_offsets is not None:  # ... and a prior correction (same weights)
        key["grade_logit_offsets"] = list(bundle.grade_logit_offsets)
    return json.dumps(key, sort_keys=True)


def frame_motion(frames: np.ndarray) -> np.ndarray:
    """Mean absolute gray difference to the previous frame (docs/smoothing.md); NaN first."""
    out = np.full(len(frames), np.nan)
    for i in range(1, len(frames)):
        diff = np.abs(frames[i].astype(np.int16) - frames[i - 1].astype(np.int16))
        out[i] = float(diff.mean())
    return out


def _score_cases(
    engine: Any, cases: list[Any], batch_size: int, key: str, shifts: Sequence[Shift] = ()
) -> Predictions:
    from tqdm import tqdm

    from pivh_live.dataset import load_frames

    idx, frame, t_s, probs, p_valid, motion = [], [], [], [], [], []
    with tqdm(desc="scoring", unit="frame", disable=None) as bar:
        for ci, case in enumerate(cases):
            frames, fps = load_frames(case)
            frames = apply_shifts(frames, shifts, ci)
            n = len(frames)
            for start in range(0, n, batch_size):
                scores = engine.score_batch(list(frames[start : start + batch_size]))
                if len(scores) != min(batch_size, n - start):
                    raise EngineError(f"engine returned {len(scores)} scores for a batch")
                probs.extend(s.grade_probs for s in scores)
                p_valid.extend(s.p_valid for s in scores)
                bar.update(len(scores))
            idx.append(np.full(n, ci))
            frame.append(np.arange(n))
            t_s.append(np.arange(n) / float(fps))
            motion.append(frame_motion(frames))
            bar.set_postfix(case=f"{ci + 1}/{len(cases)}")
    return Predictions(
        key=key,
        case_ids=tuple(c.case_id for c in cases),
        case_index=np.concatenate(idx).astype(np.int64) if idx else np.zeros(0, np.int64),
        frame=np.concatenate(frame).astype(np.int64) if frame else np.zeros(0, np.int64),
        t_s=np.concatenate(t_s) if t_s else np.zeros(0),
        grade_probs=np.asarray(probs, dtype=np.float32).reshape(-1, N_GRADES),
        p_valid=np.asarray(p_valid, dtype=np.float32),
        motion=np.concatenate(motion) if motion else np.zeros(0),
    )


def _frame_labels(cases: list[Any], pred: Predictions) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame visible grade (-1 no brain, -2 unlabelled) and valid (1/0, -1 unlabelled)."""
    from pivh_live.dataset import load_frame_labels

    grade = np.full(len(pred.frame), -2, dtype=np.int64)
    valid = np.full(len(pred.frame), -1, dtype=np.int64)
    for ci, case in enumerate(cases):
        labels = load_frame_labels(case)
        if labels is None:
            continue
        rows = np.flatnonzero(pred.case_index == ci)
        lab_frame = np.asarray(labels.frame, dtype=np.int64)
        if len(lab_frame) != len(rows):
            log.warning(
                "case %s: %d frame labels for %d decoded frames; unmatched frames are unlabelled",
                case.case_id,
                len(lab_frame),
                len(rows),
            )
        ok = (lab_frame >= 0) & (lab_frame < len(rows))
        grade[rows[lab_frame[ok]]] = np.asarray(labels.visible_grade)[ok]
        valid[rows[lab_frame[ok]]] = np.asarray(labels.valid, dtype=bool)[ok].astype(np.int64)
    return grade, valid


def _summarize_clips(cases: list[Any], pred: Predictions, thresholds: dict[str, float]) -> list:
    from pivh_live.smoothing import SmoothingConfig, summarize_clip

    config = SmoothingConfig.from_thresholds(
        thresholds["pivh"], thresholds["severe"], thresholds["valid"]
    )
    results = []
    for ci in range(len(cases)):
        rows = pred.case_index == ci
        results.append(
            summarize_clip(
                pred.t_s[rows],
                pred.grade_probs[rows],
                pred.p_valid[rows],
                config,
                motion=pred.motion[rows],
            )
        )
    return results


def _dataset_info(data_dir: Path, cases: list[Any], grade: np.ndarray) -> dict[str, Any]:
    from pivh_live.dataset import read_dataset_meta

    info: dict[str, Any] = {"path": str(data_dir), "name": data_dir.name, "seed": None}
    meta = read_dataset_meta(data_dir)
    if meta is not None:
        info["name"] = meta.get("name", info["name"])
        info["seed"] = meta.get("seed")
        info["phantom"] = meta
    clip_counts = Counter(int(c.clip_grade) for c in cases)
    frame_counts = Counter(int(g) for g in grade)
    info |= {
        "n_cases": len(cases),
        "n_frames": len(grade),
        "n_labelled_frames": int((grade >= 0).sum()),
        "clip_grade_counts": [clip_counts.get(g, 0) for g in range(N_GRADES)],
        "frame_grade_counts": {
            "no_brain": frame_counts.get(-1, 0),
            "unlabelled": frame_counts.get(-2, 0),
            **{str(g): frame_counts.get(g, 0) for g in range(N_GRADES)},
        },
        "splits": dict(Counter(str(getattr(c, "split", "") or "none") for c in cases)),
        # Clips that show less than the patient's exam grade (labels.csv exam_grade).
        "clips_below_exam_grade": sum(
            getattr(c, "exam_grade", None) is not None and c.exam_grade > c.clip_grade
            for c in cases
        ),
    }
    return info


def training_overlap(card: dict[str, Any], data_dir: Path, dataset: dict[str, Any]) -> str | None:
    """Why the evaluation data may share cases with the training data, or None."""
    training = card.get("training_data") or {}
    train_dirs = training.get("train") or []
    train_dirs = [train_dirs] if isinstance(train_dirs, str) else train_dirs
    if any(Path(d).resolve() == data_dir.resolve() for d in train_dirs):
        return f"{data_dir} is a directory the model was trained on"
    meta = dataset.get("phantom") or {}
    train_metas = training.get("dataset") or {}
    train_metas = [train_metas] if isinstance(train_metas, dict) else train_metas
    keys = ("generator", "seed")
    for train_meta in (tm or {} for tm in train_metas):
        if meta.get("seed") is not None and all(meta.get(k) == train_meta.get(k) for k in keys):
            # The phantom seeds case i from (seed, i): the same seed repeats the same clips.
            return f"{data_dir} is a phantom with the training data's seed {meta['seed']}"
    return None


@dataclass(frozen=True)
class SetResult:
    """One dataset's evaluation: its metrics.json and the arrays behind it."""

    name: str
    result: dict[str, Any]
    cases: list[Any]
    pred: Predictions
    fa: summary.FrameArrays
    ca: summary.ClipArrays
    clips: list[Any]


def write_outputs(out: Path, s: SetResult, gallery: int = DEFAULT_LIMIT) -> None:
    """metrics.json, frames.csv, clips.csv, the plots and report.html of ``s`` into ``out``.

    ``gallery``: how many of the costliest grade disagreements to show with a
    frame each (``disagreements``; 0: none). Their images are written private
    to the user, and so is a report that embeds them.
    """
    from pivh_live.recording.files import write_private_bytes

    result = s.result
    items = []
    clear_gallery(out)  # images of an earlier run would no longer match its metrics
    if gallery > 0:
        valid_thr = float(result["model"]["thresholds"].get("valid", 0.5))
        items = find_disagreements(
            s.cases, s.pred, s.fa.visible_grade, s.clips, gallery, valid_threshold=valid_thr
        )
        items = write_gallery(out, s.cases, items)
    result["clip"]["disagreements"] = [d.as_dict() for d in items]
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    write_tables(out, s.cases, s.pred, s.fa, s.clips)
    images = plots.write_plots(out, s.fa, s.ca, result)
    pictures = {d.image: (out / d.image).read_bytes() for d in items if d.image}
    page = render_report(result, images, pictures).encode("utf-8")
    if pictures:
        write_private_bytes(out / "report.html", page)
    else:
        (out / "report.html").write_bytes(page)
    summary.log_summary(result)
    log.info("wrote %s", out / "report.html")


def evaluate(
    bundle_path: str | Path,
    data_dir: str | Path | Sequence[str | Path],
    out_dir: str | Path,
    engine: str = "onnxruntime",
    n_bootstrap: int = 1000,
    seed: int = 0,
    batch_size: int = 32,
    *,
    update_card: bool = False,
    reuse_predictions: bool = True,
    split: str | None = None,
    shifts: Sequence[Shift] = (),
    gallery: int = DEFAULT_LIMIT,
) -> dict[str, Any]:
    """Evaluate the bundle at ``bundle_path`` on ``data_dir``; returns metrics.json.

    ``data_dir`` is one dataset or several: with several, each gets its own
    report in OUT/<dataset dir name>/ and OUT holds the pooled report over all
    their clips (``pool``). ``split`` keeps only the cases of that split
    (train, val, test); None keeps every case. ``shifts`` re-render every
    decoded frame before the engine sees it (a robustness check, see
    ``shifts``). Cached per-frame outputs in predictions.npz are reused when
    the bundle hash, engine, shifts and media files are unchanged
    (``reuse_predictions``). ``gallery`` is the number of costliest grade
    disagreements each report shows with a frame (0: none; ``disagreements``).
    """
    from pivh_live.bundle import load_bundle, update_card_metrics
    from pivh_live.evaluation.pool import pool_sets, set_names

    if gallery < 0:
        raise ConfigError(f"--gallery must be 0 or more, got {gallery}")
    if n_bootstrap < 1 or batch_size < 1:
        raise ConfigError(
            f"bootstrap resamples ({n_bootstrap}) and batch size ({batch_size}) must be >= 1"
        )
    if shifts and update_card:
        raise ConfigError(
            "--update-card writes the model's own metrics; drop it when evaluating with --shift"
        )
    dirs = [Path(data_dir)] if isinstance(data_dir, str | Path) else [Path(d) for d in data_dir]
    if not dirs:
        raise ConfigError("no dataset given; pass --data DIR (one or more)")
    seen: set[Path] = set()
    for d in dirs:
        if d.resolve() in seen:
            raise ConfigError(f"{d} is given twice; pass each dataset once to pool them")
        seen.add(d.resolve())
    if len(dirs) > 1 and update_card:
        raise ConfigError(
            "--update-card writes one dataset's metrics into the card; evaluate that dataset "
            "alone to update the card"
        )
    bundle_path, out = Path(bundle_path), Path(out_dir)
    bundle = load_bundle(bundle_path)
    opts = {"engine": engine, "n_bootstrap": n_bootstrap, "seed": seed, "split": split}
    if len(dirs) == 1:
        one = _evaluate_one(bundle, dirs[0], out, batch_size, reuse_predictions, shifts, **opts)
        write_outputs(out, one, gallery)
        if update_card:
            update_card_metrics(bundle_path, summary.card_summary(one.result))
            log.info("updated %s metrics", bundle_path / "model.json")
        return one.result
    sets = []
    for name, d in zip(set_names(dirs), dirs, strict=True):
        log.info("dataset %s -> %s", d, out / name)
        one = _evaluate_one(bundle, d, out / name, batch_size, reuse_predictions, shifts, **opts)
        write_outputs(out / name, one, gallery)
        sets.append(dataclasses.replace(one, name=name))
    pooled = pool_sets(sets, bundle, n_bootstrap, seed)
    write_outputs(out, pooled, gallery)
    return pooled.result


def _evaluate_one(
    bundle: Any,
    data_dir: Path,
    out: Path,
    batch_size: int,
    reuse_predictions: bool,
    shifts: Sequence[Shift],
    *,
    engine: str,
    n_bootstrap: int,
    seed: int,
    split: str | None,
) -> SetResult:
    """Score one dataset (or reuse OUT's cache) and compute its metrics; writes only the cache."""
    from pivh_live.dataset import read_dataset
    from pivh_live.engines import create_engine

    cases = list(read_dataset(data_dir).cases)
    if split is not None:
        cases = [c for c in cases if c.split == split]
    if not cases:
        which = f" in split '{split}'" if split else ""
        raise DatasetError(f"{data_dir} has no cases{which}; nothing to evaluate")
    out.mkdir(parents=True, exist_ok=True)

    if shifts:
        log.warning(
            "input shifted by %s before scoring: a robustness check, not the model's "
            "metrics on this dataset",
            ", ".join(s.text for s in shifts),
        )
    key = _cache_key(bundle, engine, cases, shifts)
    cache = out / PREDICTIONS_FILE
    pred = _load_cache(cache) if reuse_predictions and cache.is_file() else None
    if pred is not None and pred.key == key:
        log.info("reusing per-frame outputs from %s", cache)
    else:
        with create_engine(engine, bundle) as eng:
            pred = _score_cases(eng, cases, batch_size, key, shifts)
        pred.save(cache)

    grade, valid = _frame_labels(cases, pred)
    fa = summary.FrameArrays(pred.case_index, grade, valid, pred.grade_probs, pred.p_valid)
    clips = _summarize_clips(cases, pred, bundle.thresholds)
    ca = summary.ClipArrays(
        label_grade=np.array([int(c.clip_grade) for c in cases]),
        pred_grade=np.array([r.clip_grade for r in clips]),
        p_pivh=np.array([r.p_pivh for r in clips]),
        p_severe=np.array([r.p_severe for r in clips]),
        assessable=np.array([r.assessable for r in clips], dtype=bool),
    )
    dataset = _dataset_info(data_dir, cases, grade)
    dataset["overlap_with_training"] = training_overlap(bundle.card, data_dir, dataset)
    for split_name in ("train", "val"):
        if split_name in dataset["splits"]:
            log.warning(
                "%d case(s) are marked split=%s: metrics on them are optimistic; "
                "evaluate held-out data (split=test or a separate dataset)",
                dataset["splits"][split_name],
                split_name,
            )
    if dataset["overlap_with_training"]:
        log.warning("%s: metrics are optimistic", dataset["overlap_with_training"])
    texts = [s.text for s in shifts]
    result = build_result(bundle, dataset, fa, ca, clips, cases, engine, texts, n_bootstrap, seed)
    return SetResult(data_dir.name, result, cases, pred, fa, ca, clips)


def build_result(
    bundle: Any,
    dataset: dict[str, Any],
    fa: summary.FrameArrays,
    ca: summary.ClipArrays,
    clips: list[Any],
    cases: list[Any],
    engine: str,
    shifts: Sequence[str],
    n_bootstrap: int,
    seed: int,
) -> dict[str, Any]:
    """The metrics.json document for clips ``ca`` and frames ``fa`` of ``dataset``."""
    clip = summary.clip_metrics(ca, bundle.thresholds, n_bootstrap, seed)
    clip["unassessable"]["case_ids"] = [
        c.case_id for c, r in zip(cases, clips, strict=True) if not r.assessable
    ]
    if clip["unassessable"]["n"]:
        log.warning(
            "%d clip(s) had no valid frame and are left out of the clip metrics: %s",
            clip["unassessable"]["n"],
            ", ".join(clip["unassessable"]["case_ids"][:10]),
        )
    return {
        "disclaimer": DISCLAIMER,
        "pivh_live_version": __version__,
        "model": {
            "name": bundle.name,
            "version": bundle.version,
            "sha256": bundle.onnx_sha256,
            "intended_use": bundle.card.get("intended_use"),
            "thresholds": dict(bundle.thresholds),
            "tta": bundle.tta,
            "norm": bundle.norm,
        },
        "dataset": dataset,
        "settings": {
            "engine": engine,
            "shifts": list(shifts),
            "n_bootstrap": n_bootstrap,
            "seed": seed,
            "ci_level": 0.95,
            "nicu_pivh_prevalence": m.NICU_PIVH_PREVALENCE,
            "nicu_severe_prevalence": m.NICU_SEVERE_PREVALENCE,
            "nicu_grade_mix_percent": {str(k): v for k, v in m.NICU_GRADE_MIX.items()},
        },
        "targets": summary.targets(clip),
        "clip": clip,
        "frame": summary.frame_metrics(fa, bundle.thresholds, n_bootstrap, seed),
    }


def evaluate_from_cli(args: argparse.Namespace) -> dict[str, Any]:
    return evaluate(
        args.model,
        args.data,
        args.out,
        engine=args.engine,
        n_bootstrap=args.bootstrap,
        seed=args.seed,
        update_card=args.update_card,
        split=getattr(args, "split", None),
        shifts=[parse_shift(s) for s in getattr(args, "shift", None) or ()],
        gallery=getattr(args, "gallery", DEFAULT_LIMIT),
    )
