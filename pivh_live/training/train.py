"""Training loop: data, losses, checkpoints; per-epoch validation and the
operating thresholds are in ``pivh_live.training.validation``.

``train(config, data_dir, out_dir)`` writes OUT/config.json, OUT/history.jsonl
(one JSON line per epoch), OUT/last.pt every epoch (with optimizer, scheduler
and RNG state for ``resume``) and OUT/best.pt whenever the validation score
(clip AUC + clip quadratic kappa) improves. Checkpoints follow
``CHECKPOINT_FORMAT`` (the contract with ``pivh_live.training.export``) and
load with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pivh_live.errors import ConfigError, DatasetError
from pivh_live.preprocess import FITS
from pivh_live.training.config import TrainConfig, load_config
from pivh_live.training.data import FrameSet
from pivh_live.training.ema import WeightAverage
from pivh_live.training.validation import validate

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "pivh-live-checkpoint/1"
SCALE = "1/255"


def train_from_cli(args: argparse.Namespace) -> Path:
    config = load_config(args.config)
    overrides = {k: getattr(args, k) for k in ("epochs", "seed") if getattr(args, k) is not None}
    if "epochs" in overrides:  # a shorter run still validates its last epoch
        overrides["val_from_epoch"] = min(config.val_from_epoch, overrides["epochs"])
        # ... and keeps the low-resolution phase's share of the epochs
        low = round(config.low_res_epochs / config.epochs * overrides["epochs"])
        overrides["low_res_epochs"] = min(low, overrides["epochs"] - 1)
    if overrides:
        config = config.replace(**overrides)
    return train(
        config,
        args.data,
        args.out,
        val_dir=args.val_data,
        resume=args.resume,
        threads=args.threads,
        train_only=getattr(args, "train_only", None),
    )


def train(
    config: TrainConfig,
    data_dir: str | Path | Sequence[str | Path],
    out_dir: str | Path,
    val_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    max_epochs: int | None = None,
    threads: int | None = None,
    train_only: Sequence[str | Path] | None = None,
) -> Path:
    """Train PivhNet; returns the path of the best checkpoint (OUT/best.pt).

    ``threads`` sets torch's CPU threads (default: up to 2). On a machine shared
    with other busy processes 1 is much faster: torch's worker threads wait on
    each other whenever one of them is descheduled.

    ``max_epochs`` stops this call after that many epochs (the schedule still
    spans ``config.epochs``), so a long run can be split into sittings and
    continued with ``resume=True``.

    ``train_only`` datasets add training cases after the validation cases are
    chosen from ``data_dir``, so the validation set (and a score on it) is the
    same as without them.
    """
    import torch

    torch.manual_seed(config.seed)
    torch.set_num_threads(threads or max(1, min(2, os.cpu_count() or 1)))
    # Denormal floats (weights and activations near zero late in training) make CPU
    # convolutions several times slower; flushing them to zero costs no accuracy here.
    # The flag is process-wide (numpy and every later caller see it), so put it back.
    flushing = flushes_denormals()
    torch.set_flush_denormal(True)
    try:
        with _compile_fallback(config.torch_compile):
            return _train(
                config, data_dir, out_dir, val_dir, resume, progress, max_epochs, train_only
            )
    finally:
        torch.set_flush_denormal(flushing)


def _compile_fallback(enabled: bool) -> Any:
    """For a compiled run: a graph that fails to compile runs eagerly (this run only)."""
    import contextlib

    if not enabled:
        return contextlib.nullcontext()
    import torch._dynamo

    return torch._dynamo.config.patch(suppress_errors=True)


def flushes_denormals() -> bool:
    """True when the CPU currently flushes subnormal floats to zero (FTZ/DAZ)."""
    tiny = np.array([1e-39], dtype=np.float32)  # subnormal in float32
    return bool((tiny * np.float32(1.0))[0] == 0.0)


def _train(
    config: TrainConfig,
    data_dir: str | Path | Sequence[str | Path],
    out_dir: str | Path,
    val_dir: str | Path | None,
    resume: bool,
    progress: bool,
    max_epochs: int | None,
    train_only: Sequence[str | Path] | None,
) -> Path:
    import torch

    from pivh_live.training.data import class_weights, small_lesion_weights

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = _device(config.device)
    resume_from = _read_resume(out / "last.pt", config) if resume else None
    dirs = [Path(data_dir)] if isinstance(data_dir, (str, Path)) else [Path(d) for d in data_dir]
    extra = [Path(d) for d in train_only or ()]
    train_set, val_set, data_info = _load_data(config, dirs, val_dir, progress, extra)
    weights = torch.from_numpy(class_weights(train_set.grade, 5, config.class_weight_power))
    log.info("class weights (grades 0-IV): %s", np.round(weights.numpy(), 3).tolist())
    sampling = small_lesion_weights(
        train_set, config.small_lesion_weight, config.small_lesion_quantile
    )
    if sampling is not None:
        log.info(
            "size-balanced sampling: the smallest %.0f%% of each grade's lesions drawn %.3g x "
            "as often",
            100 * config.small_lesion_quantile,
            config.small_lesion_weight,
        )

    model, optimizer, scheduler, steps = _build(config, device, len(train_set))
    step_model = compiled_for_training(model) if config.torch_compile else model
    ema = WeightAverage(model, config.ema_decay) if config.ema_decay > 0 else None
    deployed = ema.module if ema is not None else model  # what is validated and saved
    start_epoch, best_score = 0, -math.inf
    if resume_from is not None:
        start_epoch, best_score = _restore(resume_from, model, optimizer, scheduler, ema)
    _trim_history(out / "history.jsonl", start_epoch)
    (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    loader_data = _dataset(config, train_set)
    ctx = {
        "config": config,
        "device": device,
        "autocast": autocast_for(config.precision, device),
        "ema": ema,
        "sampling": sampling,
    }
    stop = config.epochs if max_epochs is None else min(config.epochs, start_epoch + max_epochs)
    for epoch in range(start_epoch, stop):
        t0 = time.monotonic()
        losses = _train_epoch(
            step_model, optimizer, scheduler, loader_data, weights, epoch, steps, ctx, progress
        )
        validated = epoch + 1 >= config.val_from_epoch
        if validated:
            metrics, thresholds = validate(deployed, val_set, config, device)
        else:  # validation never touches the weights or the RNG: skipping it changes nothing
            metrics, thresholds = {}, {}
        metrics_json = {k: None if math.isnan(v) else v for k, v in metrics.items()}
        elapsed = time.monotonic() - t0
        score = metrics.get("score", -math.inf)
        improved = validated and score > best_score
        best_score = max(best_score, score)
        record = {
            "epoch": epoch + 1,
            "lr": scheduler.get_last_lr()[0],
            "train": losses,
            "val": metrics_json if validated else None,
            "thresholds": thresholds if validated else None,
            "seconds": round(elapsed, 1),
            "best": improved,
        }
        with (out / "history.jsonl").open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        ckpt = _checkpoint(deployed, config, epoch + 1, metrics_json, thresholds, data_info)
        if improved:
            _save(ckpt, out / "best.pt")
        state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
        state["best_score"] = best_score
        state["rng"] = {"torch": torch.get_rng_state()}
        if ema is not None:  # the checkpoint's state_dict is the average; keep the raw weights
            state["model"] = _cpu_state(model)
            state["ema_updates"] = ema.updates
        _save({**ckpt, "training_state": state}, out / "last.pt")
        _log_epoch(epoch, config.epochs, losses, metrics, improved, elapsed)
    best = out / "best.pt"
    log.info("best checkpoint: %s (score %.3f)", best, best_score)
    return best


def _log_epoch(
    epoch: int,
    epochs: int,
    losses: dict[str, float],
    metrics: dict[str, float],
    improved: bool,
    elapsed: float,
) -> None:
    if not metrics:
        log.info(
            "epoch %d/%d loss %.4f | not validated (val_from_epoch) | %.0f s",
            epoch + 1,
            epochs,
            losses["total"],
            elapsed,
        )
        return
    log.info(
        "epoch %d/%d loss %.4f | val frame AUC %.3f kappa %.3f valid-acc %.3f | "
        "clip AUC %.3f severe AUC %.3f kappa %.3f | score %.3f%s | %.0f s",
        epoch + 1,
        epochs,
        losses["total"],
        metrics["frame_auc"],
        metrics["frame_kappa"],
        metrics["valid_acc"],
        metrics["clip_auc"],
        metrics["clip_severe_auc"],
        metrics["clip_kappa"],
        metrics["score"],
        " (best)" if improved else "",
        elapsed,
    )


def _device(name: str) -> Any:
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("config device 'cuda' but torch sees no GPU; set device to 'cpu'")
    return torch.device(name)


def _load_data(
    config: TrainConfig,
    data_dirs: list[Path],
    val_dir: str | Path | None,
    progress: bool,
    train_only: Sequence[Path] = (),
) -> tuple[FrameSet, FrameSet, dict[str, Any]]:
    from pivh_live.dataset import read_dataset_meta
    from pivh_live.training.data import load_frameset

    train_cases, val_cases = training_cases(config, data_dirs, val_dir, train_only)
    size = config.model.input_size
    workers = config.decode_workers
    fit = config.model.fit
    train_set = load_frameset(
        train_cases, size, config.frame_stride, progress=progress, workers=workers, fit=fit
    )
    val_set = load_frameset(
        val_cases, size, config.val_frame_stride, progress=progress, workers=workers, fit=fit
    )
    graded = train_set.grade[train_set.grade >= 0]
    log.info(
        "train: %d cases, %d frames (grades 0-IV %s, %d not valid); val: %d cases, %d frames",
        len(train_cases),
        len(train_set),
        np.bincount(graded, minlength=5).tolist(),
        int((train_set.valid == 0).sum()),
        len(val_cases),
        len(val_set),
    )
    metas = [read_dataset_meta(d) for d in data_dirs]
    single = len(data_dirs) == 1
    info = {
        "train": str(data_dirs[0]) if single else [str(d) for d in data_dirs],
        "val": str(val_dir) if val_dir is not None else None,
        "n_train_cases": len(train_cases),
        "n_val_cases": len(val_cases),
        "n_train_frames": len(train_set),
        "n_val_frames": len(val_set),
        "val_case_ids": [c.case_id for c in val_set.cases],
        "dataset_meta": metas[0] if single else metas,
        "val_dataset_meta": read_dataset_meta(Path(val_dir)) if val_dir is not None else None,
        "train_only": [str(d) for d in train_only],
        "train_only_meta": [read_dataset_meta(d) for d in train_only],
    }
    return train_set, val_set, info


def training_cases(
    config: TrainConfig,
    data_dirs: Sequence[Path],
    val_dir: str | Path | None = None,
    train_only: Sequence[Path] = (),
) -> tuple[list[Any], list[Any]]:
    """The (training, validation) cases a run with these arguments uses, in order."""
    from pivh_live.dataset import read_dataset
    from pivh_live.training.data import case_split, split_cases

    # Several directories train as one pool (case ids may repeat across them).
    cases = [c for d in data_dirs for c in read_dataset(d).cases]
    if val_dir is not None:
        train_cases = [c for c in cases if case_split(c) != "test"]
        val_all = read_dataset(Path(val_dir)).cases
        val_cases = [c for c in val_all if case_split(c) != "test"]
    else:
        split_seed = config.seed if config.split_seed < 0 else config.split_seed
        train_cases, val_cases = split_cases(cases, config.val_fraction, split_seed)
    # Chosen after the split, so they never move a case between train and validation.
    extra = [c for d in train_only for c in read_dataset(d).cases]
    train_cases = train_cases + [c for c in extra if case_split(c) != "test"]
    if not train_cases or not val_cases:
        names = ", ".join(map(str, data_dirs))
        raise DatasetError(f"{names}: need training and validation cases; add cases")
    return train_cases, val_cases


def _build(config: TrainConfig, device: Any, n_train: int) -> tuple[Any, Any, Any, int]:
    import torch

    from pivh_live.training.network import PivhNet

    model = PivhNet(config.model).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
        if config.nchw_stem:
            keep_stem_nchw(model)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=config.lr,
    )
    samples = max(config.samples_per_epoch or n_train, config.batch_size)
    steps = samples // config.batch_size
    schedule = functools.partial(
        lr_factor,
        total=steps * config.epochs,
        warmup=config.warmup_fraction,
        kind=config.schedule,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    return model, optimizer, scheduler, steps


CXX_COMPILERS = ("g++", "c++", "clang++")


def compiled_for_training(model: Any) -> Any:
    """``model`` wrapped by ``torch.compile`` for the training step (weights shared).

    Without a C++ compiler (Inductor's CPU backend needs one) the plain module
    comes back with a warning; in `train`, a graph that fails to compile later
    runs eagerly (dynamo's ``suppress_errors``), so a run is never lost to the
    compiler.
    """
    import torch

    if not any(shutil.which(c) for c in CXX_COMPILERS):
        log.warning(
            "torch_compile: no C++ compiler (%s) found; training uncompiled "
            "(install g++ to use it)",
            ", ".join(CXX_COMPILERS),
        )
        return model
    log.info("torch_compile: the first step at each input size compiles (about a minute)")
    return torch.compile(model, dynamic=False)


def keep_stem_nchw(model: Any) -> None:
    """Run ``model.stem`` (of a channels-last model) in NCHW, its output as NHWC.

    Only memory layouts change, not the arithmetic: CPU batch norm is slow on
    NHWC tensors with few channels (8 at half the input side in the stem), and
    the layers after the stem prefer NHWC.
    """
    import torch

    def to_nhwc(_module: Any, _inputs: Any, output: Any) -> Any:
        return output.contiguous(memory_format=torch.channels_last)

    model.stem.to(memory_format=torch.contiguous_format)
    model.stem.register_forward_hook(to_nhwc)


def autocast_for(precision: str, device: Any) -> Any:
    """A no-argument factory of the forward pass's autocast context.

    "bf16" autocasts convolutions and matmuls to bfloat16 (about 1.4x faster
    training on CPUs with AVX512-BF16 or AMX); parameters, gradients, the
    optimizer and validation stay float32, so the exported model is float32 as
    always. Devices without bf16 support train in float32, with a warning.
    """
    import contextlib

    import torch

    if precision != "bf16":
        return contextlib.nullcontext
    if device.type == "cuda":
        supported = torch.cuda.is_bf16_supported()
    else:
        supported = torch.backends.mkldnn.is_available() and bool(
            torch.ops.mkldnn._is_mkldnn_bf16_supported()
        )
    if not supported:
        log.warning("precision bf16: this %s has no bf16 support; training in fp32", device.type)
        return contextlib.nullcontext
    return functools.partial(torch.autocast, device.type, dtype=torch.bfloat16)


def lr_factor(step: int, total: int, warmup: float, kind: str) -> float:
    """Learning-rate multiplier at optimizer step ``step`` of ``total``.

    "onecycle": cosine rise from lr/25 over the warm-up share, then cosine
    decay to lr/10^4 (the one-cycle policy without momentum cycling);
    "cosine": linear warm-up from 0, then cosine decay to 0.
    """
    warm = max(1, round(total * warmup))
    if step < warm:
        if kind == "onecycle":
            return 0.04 + 0.96 * 0.5 * (1.0 - math.cos(math.pi * step / warm))
        return (step + 1) / warm
    progress = min(1.0, (step - warm) / max(1, total - warm))
    floor = 1e-4 if kind == "onecycle" else 0.0
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _dataset(config: TrainConfig, train_set: FrameSet) -> Any:
    from pivh_live.training.augment import Augmenter
    from pivh_live.training.data import FrameDataset

    aug = Augmenter(config.augment) if config.augment.enabled else None
    return FrameDataset(train_set, aug, config.seed, config.model.heatmap_size, config.model.norm)


def _read_resume(path: Path, config: TrainConfig) -> dict[str, Any]:
    """last.pt, checked before any data is decoded: it exists, has state, same config."""
    import torch

    if not path.is_file():
        raise ConfigError(f"cannot resume: {path} not found; train without --resume first")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    state = ckpt.get("training_state") if isinstance(ckpt, dict) else None
    if state is None:
        raise ConfigError(f"cannot resume: {path} has no training state; start a new run")
    saved = TrainConfig.from_dict(ckpt["train_config"])
    if saved != config:
        now, then = config.to_dict(), saved.to_dict()
        diff = sorted(k for k in now if now[k] != then[k])
        raise ConfigError(
            f"cannot resume: {path} was trained with different settings ({', '.join(diff)}); "
            "resume with the same --config/--epochs/--seed or start a new --out"
        )
    if int(ckpt["epoch"]) >= config.epochs:
        raise ConfigError(
            f"nothing to resume: {path} is already at epoch {ckpt['epoch']} of {config.epochs}; "
            "start a new --out to train again"
        )
    return ckpt


def _restore(
    ckpt: dict[str, Any], model: Any, optimizer: Any, scheduler: Any, ema: Any = None
) -> tuple[int, float]:
    import torch

    state = ckpt["training_state"]
    model.load_state_dict(state.get("model", ckpt["state_dict"]))
    if ema is not None:
        ema.load(ckpt["state_dict"], state["ema_updates"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"]["torch"])
    log.info("resuming after epoch %d", ckpt["epoch"])
    return int(ckpt["epoch"]), float(state["best_score"])


def _trim_history(path: Path, epochs_done: int) -> None:
    """Keep the history lines of epochs already in last.pt (a fresh run keeps none)."""
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if line.strip() and json.loads(line)["epoch"] <= epochs_done]
    path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")


def _train_epoch(
    model: Any,
    optimizer: Any,
    scheduler: Any,
    dataset: Any,
    weights: Any,
    epoch: int,
    steps: int,
    ctx: dict[str, Any],
    progress: bool,
) -> dict[str, float]:
    import torch
    from tqdm import tqdm

    from pivh_live.training.data import epoch_indices
    from pivh_live.training.network import compute_loss

    config: TrainConfig = ctx["config"]
    device = ctx["device"]
    low_res = epoch < config.low_res_epochs
    dataset.set_epoch(
        epoch, config.low_res_size if low_res and config.low_res_resize_first else None
    )
    rows = epoch_indices(
        len(dataset), steps * config.batch_size, config.seed, epoch, ctx.get("sampling")
    )
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=config.batch_size,
        sampler=rows.tolist(),
        num_workers=config.num_workers,
        drop_last=True,
    )
    model.train()
    weights = weights.to(device)
    sums: dict[str, float] = {}
    n = 0
    bar = tqdm(
        loader, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", disable=not progress
    )
    for batch in bar:
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        image = batch["image"]
        if low_res and image.shape[-1] != config.low_res_size:
            image, batch["heatmap"] = low_res_batch(image, batch["heatmap"], config.low_res_size)
        if config.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        with ctx["autocast"]():
            outputs = model(image)
        outputs = tuple(o.float() for o in outputs)
        total, parts = compute_loss(outputs, batch, weights, config)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        scheduler.step()
        if ctx.get("ema") is not None:
            ctx["ema"].update()
        n += 1
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + v
        bar.set_postfix(loss=f"{sums['total'] / n:.3f}")
    return {k: round(v / max(n, 1), 5) for k, v in sums.items()}


def low_res_batch(image: Any, heatmap: Any, size: int) -> tuple[Any, Any]:
    """Images (N, 1, S, S) and heatmap targets (N, 1, S/8, S/8) resized to ``size``.

    Antialiased bilinear for the images (close to the area resize that
    preprocessing uses at run time), area averaging for the lesion coverage.
    """
    import torch.nn.functional as F

    small = F.interpolate(image, size=(size, size), mode="bilinear", antialias=True)
    heat = F.interpolate(heatmap, size=(size // 8, size // 8), mode="area")
    return small.clamp_(0.0, 1.0), heat


def _checkpoint(
    model: Any,
    config: TrainConfig,
    epoch: int,
    metrics: dict[str, float],
    thresholds: dict[str, float],
    data_info: dict[str, Any],
) -> dict[str, Any]:
    state = _cpu_state(model)
    return {
        "format": CHECKPOINT_FORMAT,
        "model_config": dataclasses.asdict(config.model),
        "state_dict": state,
        "thresholds": thresholds,
        "train_config": config.to_dict(),
        "val_metrics": metrics,
        "epoch": epoch,
        "data": data_info,
        "preprocess": {
            "input_size": config.model.input_size,
            "letterbox": FITS[config.model.fit],
            "scale": SCALE,
            "norm": config.model.norm,
        },
    }


def _cpu_state(model: Any) -> dict[str, Any]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _save(obj: dict[str, Any], path: Path) -> None:
    import torch

    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
