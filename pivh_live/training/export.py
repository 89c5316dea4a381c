"""Export a training checkpoint to a model bundle (model.onnx + model.json + model.pt).

The ONNX graph comes from torch's dynamo exporter with a dynamic batch
dimension and is saved as one file. Before anything is published the
exported graph is run in ONNX Runtime on seeded phantom-like inputs and
compared with torch (tolerances below); the bundle is written in a temporary
directory next to ``out_dir`` and renamed into place, so a failed export
leaves no half bundle.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import logging
import platform
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pivh_live import __version__
from pivh_live.bundle import (
    CARD_FILE,
    INPUT_NAME,
    ONNX_FILE,
    OUTPUT_NAMES,
    THRESHOLD_KEYS,
    TORCH_FILE,
    load_bundle,
    make_card,
    sha256_file,
    write_json_atomic,
)
from pivh_live.errors import ModelBundleError
from pivh_live.preprocess import FITS, NORMS, SCALE, preprocess_batch

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "pivh-live-checkpoint/1"
OPSET = 18
#: Max |torch - ONNX Runtime| allowed at export (float32, CPU).
LOGIT_TOLERANCE = 1e-3
PROB_TOLERANCE = 1e-4
PARITY_SEED = 20250
PARITY_BATCH = 4


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and check a pivh-live training checkpoint (torch.save dict, tensors only)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ModelBundleError(f"checkpoint {path} not found; pass the best.pt of a training run")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises pickle, zip and runtime errors here
        raise ModelBundleError(
            f"{path} is not a readable pivh-live checkpoint ({str(e).splitlines()[0][:160]}); "
            "pass the best.pt written by `pivh-live train`"
        ) from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ModelBundleError(
            f"{path} is not a {CHECKPOINT_FORMAT} checkpoint (format {found!r}); "
            "pass the best.pt written by `pivh-live train`"
        )
    missing = [k for k in ("model_config", "state_dict", "thresholds") if k not in ckpt]
    thresholds = ckpt.get("thresholds") or {}
    missing += [f"thresholds.{k}" for k in THRESHOLD_KEYS if k not in thresholds]
    if missing:
        raise ModelBundleError(f"{path} lacks {missing}; re-run training with this pivh-live")
    _check_preprocess(path, ckpt)
    return ckpt


def _check_preprocess(path: Path, ckpt: dict[str, Any]) -> None:
    pre = ckpt.get("preprocess") or {}
    size = int(ckpt["model_config"].get("input_size", 256))
    fit = str(ckpt["model_config"].get("fit", "letterbox"))
    want = {"input_size": size, "letterbox": FITS.get(fit, fit), "scale": SCALE}
    norm = str(ckpt["model_config"].get("norm", "none"))
    if pre.get("norm", "none") != norm:
        raise ModelBundleError(
            f"{path} records input norm {pre.get('norm', 'none')!r} in its preprocess but "
            f"{norm!r} in its model config; retrain with this pivh-live"
        )
    if norm not in NORMS:
        raise ModelBundleError(
            f"{path} was trained with input norm {norm!r}, this pivh-live knows "
            f"{list(NORMS)}; export it with the pivh-live version that trained it"
        )
    diff = {k: pre.get(k) for k, v in want.items() if k in pre and pre.get(k) != v}
    if diff:
        raise ModelBundleError(
            f"{path} was trained with preprocessing {diff}, this pivh-live uses {want}; "
            "retrain or export with the matching pivh-live version"
        )


def phantom_like_batch(
    n: int, size: int, seed: int = PARITY_SEED, fit: str = "letterbox", norm: str = "none"
) -> np.ndarray:
    """Seeded speckle images with bright blobs, fitted from non-square regions."""
    import cv2

    rng = np.random.default_rng(seed)
    images = []
    for i in range(n):
        h, w = int(rng.integers(size, 3 * size)), int(rng.integers(size, 3 * size))
        base = cv2.GaussianBlur(rng.rayleigh(40.0, (h, w)).astype(np.float32), (0, 0), 1.5)
        for _ in range(3):
            centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            axes = (int(rng.integers(5, w // 4)), int(rng.integers(5, h // 4)))
            cv2.ellipse(base, centre, axes, float(rng.uniform(0, 180)), 0, 360, 165.0, -1)
        if i == n - 1:
            base[:] = 0.0  # a blank frame: the valid head must see one too
        images.append(np.clip(base, 0, 255).astype(np.uint8))
    return preprocess_batch(images, size, fit, norm)


def _export_onnx(model: Any, path: Path, size: int) -> None:
    import onnx
    import torch

    # Batch 2, not 1: torch.export specialises size-1 dimensions.
    example = torch.zeros(2, 1, size, size)
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.onnx.export(
        model,
        (example,),
        dynamo=True,
        input_names=[INPUT_NAME],
        output_names=list(OUTPUT_NAMES),
        dynamic_shapes=({0: batch},),
        opset_version=OPSET,
        optimize=True,
        verbose=False,
    )
    # One self-contained file: weights inline, never external data.
    onnx.save(program.model_proto, str(path), save_as_external_data=False)


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter's helpers log every optimisation pass at INFO; keep them to warnings."""
    loggers = [logging.getLogger(n) for n in ("onnxscript", "onnx_ir", "torch.onnx")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def check_parity(
    model: Any, onnx_path: Path, size: int, fit: str = "letterbox", norm: str = "none"
) -> dict[str, float]:
    """Max |torch - ORT| per output (logits) and on probabilities; raises when over tolerance."""
    import onnxruntime as ort
    import torch

    from pivh_live.engines.base import scores_from_outputs
    from pivh_live.engines.torch_engine import outputs_as_dict

    batch = phantom_like_batch(PARITY_BATCH, size, fit=fit, norm=norm)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    diffs: dict[str, float] = {}
    # Batch N and batch 1 both: the exported batch dimension must really be dynamic.
    for x in (batch, batch[:1]):
        with torch.inference_mode():
            ref = {k: v.numpy() for k, v in outputs_as_dict(model(torch.from_numpy(x))).items()}
        got = dict(zip(OUTPUT_NAMES, session.run(list(OUTPUT_NAMES), {INPUT_NAME: x}), strict=True))
        for name in OUTPUT_NAMES:
            if got[name].shape != ref[name].shape:
                raise ModelBundleError(
                    f"ONNX output {name} has shape {got[name].shape}, torch {ref[name].shape}; "
                    "the export is broken - report it with the checkpoint"
                )
            d = float(np.max(np.abs(got[name] - ref[name])))
            diffs[name] = max(diffs.get(name, 0.0), d)
        for a, b in zip(scores_from_outputs(ref), scores_from_outputs(got), strict=True):
            d = max(
                float(np.max(np.abs(a.grade_probs - b.grade_probs))),
                abs(a.p_valid - b.p_valid),
                float(np.max(np.abs(a.heatmap - b.heatmap))),
            )
            diffs["probabilities"] = max(diffs.get("probabilities", 0.0), d)
    over = [k for k in OUTPUT_NAMES if diffs[k] > LOGIT_TOLERANCE]
    if diffs["probabilities"] > PROB_TOLERANCE:
        over.append("probabilities")
    if over:
        raise ModelBundleError(
            f"ONNX Runtime disagrees with torch on {over} (max abs diff {diffs}; tolerance "
            f"logits {LOGIT_TOLERANCE}, probabilities {PROB_TOLERANCE}); export not written"
        )
    return diffs


def software_versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch

    return {
        "pivh_live": __version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "python": platform.python_version(),
    }


def publish_bundle(tmp: Path, out_dir: Path) -> None:
    """Rename the finished bundle into place, replacing an older bundle there."""
    if not out_dir.exists():
        tmp.rename(out_dir)
        return
    if not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / CARD_FILE).exists()):
        raise ModelBundleError(f"{out_dir} exists and is not a model bundle; choose another --out")
    old = out_dir.with_name(f".{out_dir.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    out_dir.rename(old)
    tmp.rename(out_dir)
    shutil.rmtree(old, ignore_errors=True)


def export_bundle(
    checkpoint_path: str | Path,
    out_dir: str | Path,
    name: str | None = None,
    version: str = "0.1.0",
) -> Path:
    """Checkpoint -> verified bundle directory ``out_dir``; returns its path."""
    import torch

    from pivh_live.engines.torch_engine import load_torch_model

    ckpt = load_checkpoint(checkpoint_path)
    out_dir = Path(out_dir)
    name = name or out_dir.name
    state_dict = {k: v.detach().cpu() for k, v in ckpt["state_dict"].items()}
    weights = {"model_config": dict(ckpt["model_config"]), "state_dict": state_dict}
    try:
        model = load_torch_model(weights)
    except (RuntimeError, TypeError, KeyError) as e:
        raise ModelBundleError(
            f"{checkpoint_path} does not fit PivhNet ({str(e).splitlines()[0][:160]}); "
            "export with the pivh-live version that trained it"
        ) from e
    cfg = model.config
    size = int(cfg.input_size)
    heatmap_size = int(getattr(cfg, "heatmap_size", size // 8))
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        log.info("exporting %s to ONNX (opset %d, dynamic batch)", checkpoint_path, OPSET)
        with _quiet_exporter():
            _export_onnx(model, tmp / ONNX_FILE, size)
        parity = check_parity(model, tmp / ONNX_FILE, size, cfg.fit, cfg.norm)
        log.info("torch vs ONNX Runtime max abs diff: %s", parity)
        torch.save(weights, tmp / TORCH_FILE)
        data = ckpt.get("data") or {}
        card = make_card(
            name=name,
            version=version,
            created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            input_size=size,
            heatmap_size=heatmap_size,
            fit=cfg.fit,
            tta=cfg.tta,
            norm=cfg.norm,
            thresholds=ckpt["thresholds"],
            metrics={"validation": ckpt.get("val_metrics") or {}},
            # Everything the trainer recorded about its data (paths, counts,
            # validation case ids), with the dataset's own meta as "dataset".
            dataset={
                "dataset": data.get("dataset_meta") or {},
                **{k: v for k, v in data.items() if k != "dataset_meta"},
                "epoch": ckpt.get("epoch"),
            },
            sha256={f: sha256_file(tmp / f) for f in (ONNX_FILE, TORCH_FILE)},
            software=software_versions(),
            model_config=dataclasses.asdict(cfg),
            export={
                "exporter": "torch.onnx.export(dynamo=True)",
                "opset": OPSET,
                "parity_max_abs_diff": parity,
                "tolerance": {"logits": LOGIT_TOLERANCE, "probabilities": PROB_TOLERANCE},
            },
        )
        write_json_atomic(tmp / CARD_FILE, card)
        load_bundle(tmp)  # the same checks every consumer runs
        publish_bundle(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("wrote model bundle %s (%s %s)", out_dir, name, version)
    return out_dir


def export_from_cli(args: argparse.Namespace) -> Path:
    return export_bundle(args.checkpoint, args.out, name=args.name, version=args.version)
