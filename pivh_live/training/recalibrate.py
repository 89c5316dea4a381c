"""Recalibrate a bundle to a deployment's grade mix: prior-correction offsets + new thresholds.

``pivh-live recalibrate`` (docs/training.md, "Prior correction"):

1. counts the graded training frames per grade exactly as the run that made
   the bundle kept them (the same data, config and split) and the graded
   frames of a target dataset drawn at the deployment's prevalence;
2. turns both into grade logit offsets (`pivh_live.training.prior`);
3. scores the run's validation cases with the bundle's engine (every frame
   by default, as the display smooths them; training validates every 4th),
   without and with the offsets, and re-picks the operating thresholds on the corrected
   scores by the same rule training uses (`validation.validate_predictions`);
4. writes a new bundle: the same weights (same hashes), a card with the
   offsets, the new thresholds, both validation results and where it came
   from. Evaluations of the old bundle do not carry over. Like `export`, it
   replaces a bundle already at ``out`` only once the new one loads.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import shutil
import tempfile
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from pivh_live.bundle import (
    CARD_FILE,
    ONNX_FILE,
    TORCH_FILE,
    ModelBundle,
    load_bundle,
    set_grade_logit_offsets,
    write_json_atomic,
)
from pivh_live.errors import ConfigError, ModelBundleError
from pivh_live.training.config import TrainConfig
from pivh_live.training.data import FrameSet
from pivh_live.training.prior import effective_prior, frame_grade_counts, logit_offsets

log = logging.getLogger(__name__)


def recalibrate(
    model: str | Path,
    data_dirs: Sequence[str | Path],
    target_dirs: Sequence[str | Path],
    out: str | Path,
    config: TrainConfig,
    *,
    val_dir: str | Path | None = None,
    train_only: Sequence[str | Path] = (),
    version: str | None = None,
    engine: str = "onnxruntime",
    val_frame_stride: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """Write the recalibrated bundle to ``out`` and return its card.

    The validation cases are scored at every ``val_frame_stride``-th frame;
    1 (the default) smooths every frame, as the live display does.
    """
    from pivh_live.dataset import read_dataset
    from pivh_live.training.data import load_frameset
    from pivh_live.training.train import training_cases

    bundle = load_bundle(model)
    out = Path(out)
    if out.resolve() == bundle.path.resolve():
        raise ConfigError(f"--out {out} is the bundle being recalibrated; give another directory")
    if out.exists() and (
        not out.is_dir() or (any(out.iterdir()) and not (out / CARD_FILE).exists())
    ):
        raise ConfigError(f"{out} exists and is not a model bundle; choose another --out")
    if bundle.grade_logit_offsets is not None:
        raise ModelBundleError(
            f"{bundle.path} is already recalibrated; recalibrate the bundle it came from"
        )
    _check_config(bundle, config)
    dirs = [Path(d) for d in data_dirs]
    train_cases, val_cases = training_cases(config, dirs, val_dir, [Path(d) for d in train_only])
    train_counts = frame_grade_counts(train_cases, config.frame_stride)
    target_cases = [c for d in target_dirs for c in read_dataset(Path(d)).cases]
    target_counts = frame_grade_counts(target_cases, 1)
    offsets = logit_offsets(train_counts, target_counts, config.class_weight_power)
    log.info(
        "graded frames 0-IV: training %s, target %s; logit offsets %s",
        train_counts.tolist(),
        target_counts.tolist(),
        offsets,
    )
    if val_frame_stride < 1:
        raise ConfigError(f"--val-frame-stride must be at least 1, not {val_frame_stride}")
    frames = load_frameset(
        val_cases,
        bundle.input_size,
        val_frame_stride,
        progress=progress,
        workers=config.decode_workers,
        fit=bundle.fit,
    )
    before, _ = _validate(bundle, frames, config, engine)
    after, thresholds = _validate(
        dataclasses.replace(bundle, grade_logit_offsets=tuple(offsets)), frames, config, engine
    )
    log.info(
        "validation score %.5f -> %.5f with the prior correction", before["score"], after["score"]
    )
    card = _new_card(bundle, offsets, thresholds, before, after, version)
    card["prior_correction"] = {
        "method": (
            "Bayes prior shift: logit_offsets = log(target_prior / effective_training_prior), "
            "grade 0 at 0 (pivh_live.training.prior)"
        ),
        "training_frames": train_counts.tolist(),
        "class_weight_power": config.class_weight_power,
        "effective_training_prior": [
            round(float(v), 6) for v in effective_prior(train_counts, config.class_weight_power)
        ],
        "target_frames": target_counts.tolist(),
        "target_data": [str(d) for d in target_dirs],
        "training_data": [str(d) for d in dirs],
        "train_only": [str(d) for d in train_only],
        "val_data": str(val_dir) if val_dir is not None else None,
        "n_val_cases": len(val_cases),
        "val_frame_stride": val_frame_stride,
        "engine": engine,
    }
    _write_bundle(bundle, out, card)
    return card


def _check_config(bundle: ModelBundle, config: TrainConfig) -> None:
    """The config must describe the run that made the bundle (input, fit, norm, TTA)."""
    m = config.model
    mismatched = [
        name
        for name, ours, theirs in (
            ("input_size", m.input_size, bundle.input_size),
            ("fit", m.fit, bundle.fit),
            ("norm", m.norm, bundle.norm),
            ("tta", m.tta, bundle.tta),
        )
        if ours != theirs
    ]
    if mismatched:
        raise ConfigError(
            f"the training config's model {', '.join(mismatched)} differ from the bundle's card; "
            "give the --config the bundle was trained with"
        )


def _validate(
    bundle: ModelBundle, frames: FrameSet, config: TrainConfig, engine_name: str
) -> tuple[dict[str, float], dict[str, float]]:
    from pivh_live.engines import create_engine
    from pivh_live.training.validation import validate_predictions

    probs, valid = [], []
    with create_engine(engine_name, bundle) as engine:
        for start in range(0, len(frames), 64):
            for s in engine.score_batch(list(frames.images[start : start + 64])):
                probs.append(s.grade_probs)
                valid.append(s.p_valid)
    pred = {
        "grade_probs": np.asarray(probs, dtype=np.float32),
        "p_valid": np.asarray(valid, dtype=np.float32),
    }
    return validate_predictions(frames, pred, config)


def _new_card(
    bundle: ModelBundle,
    offsets: list[float],
    thresholds: dict[str, float],
    before: dict[str, float],
    after: dict[str, float],
    version: str | None,
) -> dict[str, Any]:
    card = copy.deepcopy(bundle.card)
    set_grade_logit_offsets(card, offsets)
    card["version"] = version or f"{bundle.version}+prior"
    card["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    card["thresholds"] = {k: float(v) for k, v in thresholds.items()}
    clean = {k: (None if v != v else v) for k, v in after.items()}  # NaN -> null
    card["metrics"] = {
        "validation": clean,
        "validation_without_prior_correction": {
            k: (None if v != v else v) for k, v in before.items()
        },
    }
    card["recalibrated_from"] = {
        "name": bundle.name,
        "version": bundle.version,
        "thresholds": dict(bundle.thresholds),
        "sha256": dict(bundle.card["sha256"]),
    }
    return card


def _write_bundle(bundle: ModelBundle, out: Path, card: dict[str, Any]) -> None:
    """Write beside ``out``, check it loads, then rename it into place (replacing a bundle)."""
    from pivh_live.training.export import publish_bundle

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        shutil.copy2(bundle.onnx_path, tmp / ONNX_FILE)
        if bundle.torch_path is not None:
            shutil.copy2(bundle.torch_path, tmp / TORCH_FILE)
        else:
            card["sha256"].pop(TORCH_FILE, None)
        write_json_atomic(tmp / CARD_FILE, card)
        load_bundle(tmp)  # the new bundle must load like any other
        publish_bundle(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
