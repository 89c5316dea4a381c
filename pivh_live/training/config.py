"""Training configuration: frozen dataclasses loaded from JSON with strict checks.

A JSON config sets any subset of the keys (nested objects ``model`` and
``augment`` likewise); unset keys keep their defaults. Unknown keys, wrong
types and malformed JSON raise ``ConfigError`` naming the key (or line and
column). Defaults and their reasons are listed in docs/training.md. No torch
here, so configs load on any machine.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pivh_live.bundle import TTAS
from pivh_live.errors import ConfigError
from pivh_live.preprocess import FITS, NORMS
from pivh_live.training.augment import AugmentConfig

CONFIG_VERSION = 1
HEATMAP_DICE = ("batch", "frame")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of PivhNet; stored in every checkpoint.

    ``width`` sets the channels: the stem has ``width // 2``, the four stages
    (strides 4, 8, 16, 32) ``width * stage_mult[i]``, each with ``depth[i]``
    residual blocks after its stride-2 block. ``fit`` is how a region fills
    the square input (`pivh_live.preprocess.FITS`): "letterbox" or "stretch".
    """

    input_size: int = 256
    width: int = 16
    stage_mult: tuple[int, ...] = (1, 2, 4, 8)
    depth: tuple[int, ...] = (1, 2, 2, 2)
    attention_heads: int = 2
    dropout: float = 0.1
    n_grades: int = 5
    fit: str = "letterbox"
    # Also feed the grade head the stride-8 features pooled under the softmax of the
    # heatmap (what the most lesion-like spot looks like at 4x the resolution).
    lesion_pool: bool = False
    # Pool, beside each stride-32 feature, the feature at its mirror position across the
    # image's vertical midline, so the grade head can tell a one-sided echodensity (an
    # infarct, usually unilateral) from a symmetric one (choroid plexus, normal blush).
    mirror_context: bool = False
    # Test-time augmentation of the deployed model (pivh_live.bundle.TTAS): "hflip" scores
    # each frame and its mirror and averages; validation (and so the picked thresholds),
    # the exported card and every engine use it. Training itself is unchanged.
    tta: str = "none"
    # How gray levels become input values (pivh_live.preprocess.NORMS): "none" divides
    # by 255; "percentile" stretches each frame's 1st-99th percentile, so the scanner's
    # gain and black level do not change what the network sees.
    norm: str = "none"

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ConfigError(f"model.norm must be one of {', '.join(NORMS)}, got {self.norm!r}")
        if self.fit not in FITS:
            raise ConfigError(f"model.fit must be one of {', '.join(FITS)}, got {self.fit!r}")
        if self.tta not in TTAS:
            raise ConfigError(f"model.tta must be one of {', '.join(TTAS)}, got {self.tta!r}")
        if self.input_size % 32 != 0 or self.input_size < 64:
            raise ConfigError(
                f"model.input_size must be a multiple of 32 >= 64, got {self.input_size}"
            )
        if len(self.stage_mult) != 4 or len(self.depth) != 4:
            raise ConfigError("model.stage_mult and model.depth need exactly 4 entries each")
        if self.width < 4 or self.attention_heads < 1:
            raise ConfigError("model.width must be >= 4 and model.attention_heads >= 1")

    @property
    def heatmap_size(self) -> int:
        return self.input_size // 8

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """Inverse of ``dataclasses.asdict`` (as stored in checkpoints); strict keys."""
        return _build(cls, data, "model.")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that shapes a training run (see docs/training.md for each key)."""

    version: int = CONFIG_VERSION
    seed: int = 0
    epochs: int = 16
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-2
    schedule: str = "onecycle"
    warmup_fraction: float = 0.1
    grad_clip: float = 5.0
    # Validate, checkpoint and export an exponential moving average of the
    # weights with this decay per optimizer step (0: off, the raw weights).
    ema_decay: float = 0.0
    # data
    frame_stride: int = 4
    val_frame_stride: int = 2
    # First epoch (1-based) that is validated; earlier epochs only train (saves
    # time when the best epoch is known to come late; weights are unaffected).
    val_from_epoch: int = 1
    samples_per_epoch: int = 8000
    # Progressive resizing: the first ``low_res_epochs`` epochs train on batches
    # resized to ``low_res_size`` (at 256 vs 320: about 0.65x the training step,
    # 0.8x the epoch with augmentation); the rest, and all validation and
    # export, use ``model.input_size``.
    low_res_epochs: int = 0
    low_res_size: int = 0
    # In the low-res epochs, resize each stored frame to ``low_res_size`` before
    # augmenting it instead of resizing the augmented batch (augmentation then works
    # on fewer pixels: faster when frames are stored at a large input size). Off by
    # default: speckle, blur and noise then act at the low-res pixel scale, so the
    # images differ from the default order's.
    low_res_resize_first: bool = False
    val_fraction: float = 0.2
    # Seed of the case-level train/validation split; -1 uses ``seed``. Pin it to rerun a
    # recipe with other initial weights, sample order and augmentation on the same split
    # (so validation scores of the runs compare).
    split_seed: int = -1
    class_weight_power: float = 0.5
    num_workers: int = 0
    # losses
    label_smoothing: float = 0.05
    # Focal modulation of the grade cross-entropy: each frame's term is scaled by
    # (1 - p_true) ** focal_gamma, so frames the model already gets right count less and
    # the rare hard ones (a small infarct, a trap) more. 0 is the plain cross-entropy.
    focal_gamma: float = 0.0
    # Size-balanced sampling: within each grade I-IV, frames whose lesion mask is
    # smaller than that grade's ``small_lesion_quantile`` of mask areas are drawn
    # ``small_lesion_weight`` x as often (with replacement), each grade keeping its
    # share of the epoch. 1 is off: the seeded permutation as before.
    small_lesion_weight: float = 1.0
    small_lesion_quantile: float = 0.25
    w_grade: float = 1.0
    w_ordinal: float = 0.5
    w_valid: float = 0.5
    w_heatmap: float = 0.5
    heatmap_pos_weight: float = 4.0
    # Soft Dice of the heatmap: "batch" pools every lesion pixel of the batch into one
    # ratio (large grade III clots dominate it); "frame" averages one ratio per frame
    # that shows a lesion, so a small nodule or infarct counts as much as a big clot
    # (frames without a lesion are left to the BCE term).
    heatmap_dice: str = "batch"
    # operating points
    target_sensitivity: float = 0.95
    severe_min_specificity: float = 0.93
    # runtime
    device: str = "cpu"
    channels_last: bool = True
    # With channels_last: keep the two stem convolutions (1-16 channels at
    # the highest resolutions) in NCHW and hand their output to the rest of
    # the network as NHWC. The same arithmetic, but CPU batch norm on an
    # 8-channel NHWC tensor is slow: about 0.82x the epoch time in a short
    # run, about 0.9x over a full one (Intel Xeon host, docs/training.md v25).
    # Off by default so existing recipes train bit-for-bit as before.
    nchw_stem: bool = False
    # "bf16": forward pass under bfloat16 autocast (weights, optimizer and
    # validation stay float32); falls back to "fp32" where the device lacks bf16.
    precision: str = "fp32"
    # Run the training step through torch.compile (Inductor fuses batch norm,
    # activations and their gradients). On the 2-core Intel host: 0.75x the
    # step alone at 320 px, but 0.89x the epoch (augmentation and the loss are
    # not compiled) and 69 min for the full recipe (docs/training.md, v27).
    # Each input size compiles once, about a minute. Needs a C++ compiler;
    # without one, or if compiling fails, training goes on uncompiled with a
    # warning. Validation, checkpoints and export use the plain module. Off by
    # default: the fused kernels round differently, so an existing recipe would
    # not train bit for bit as before.
    torch_compile: bool = False
    decode_workers: int = 2
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        if self.version != CONFIG_VERSION:
            raise ConfigError(
                f"config version {self.version} is not supported; this pivh-live reads "
                f"version {CONFIG_VERSION}"
            )
        if self.schedule not in ("onecycle", "cosine"):
            raise ConfigError(f"schedule must be 'onecycle' or 'cosine', got {self.schedule!r}")
        if self.precision not in ("fp32", "bf16"):
            raise ConfigError(f"precision must be 'fp32' or 'bf16', got {self.precision!r}")
        if self.decode_workers < 1:
            raise ConfigError(f"decode_workers must be >= 1, got {self.decode_workers}")
        if self.heatmap_dice not in HEATMAP_DICE:
            raise ConfigError(
                f"heatmap_dice must be one of {', '.join(HEATMAP_DICE)}, got {self.heatmap_dice!r}"
            )
        if self.device not in ("cpu", "cuda", "auto"):
            raise ConfigError(f"device must be 'cpu', 'cuda' or 'auto', got {self.device!r}")
        positive = ("epochs", "batch_size", "frame_stride", "val_frame_stride")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 1 <= self.val_from_epoch <= self.epochs:
            raise ConfigError(
                f"val_from_epoch must be in 1..epochs ({self.epochs}), got {self.val_from_epoch}"
            )
        if self.low_res_epochs < 0 or self.low_res_epochs >= self.epochs:
            raise ConfigError(
                f"low_res_epochs must be in 0..epochs-1 ({self.epochs - 1}), "
                f"got {self.low_res_epochs}"
            )
        if self.low_res_epochs and not (
            64 <= self.low_res_size < self.model.input_size and self.low_res_size % 32 == 0
        ):
            raise ConfigError(
                "low_res_size must be a multiple of 32, >= 64 and below model.input_size "
                f"({self.model.input_size}), got {self.low_res_size}"
            )
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.split_seed < -1:
            raise ConfigError(f"split_seed must be -1 (use seed) or >= 0, got {self.split_seed}")
        if not 0.0 < self.severe_min_specificity <= 1.0:
            raise ConfigError(
                f"severe_min_specificity must be in (0, 1], got {self.severe_min_specificity}"
            )
        if not 0.0 < self.target_sensitivity <= 1.0:
            raise ConfigError(
                f"target_sensitivity must be in (0, 1], got {self.target_sensitivity}"
            )
        if not 0.0 <= self.focal_gamma <= 5.0:
            raise ConfigError(f"focal_gamma must be in [0, 5] (0 = off), got {self.focal_gamma}")
        if not 1.0 <= self.small_lesion_weight <= 10.0:
            raise ConfigError(
                f"small_lesion_weight must be in [1, 10] (1 = off), got {self.small_lesion_weight}"
            )
        if not 0.0 < self.small_lesion_quantile < 1.0:
            raise ConfigError(
                f"small_lesion_quantile must be in (0, 1), got {self.small_lesion_quantile}"
            )
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be in [0, 1) (0 = off), got {self.ema_decay}")
        if self.lr <= 0 or self.samples_per_epoch < 0 or self.num_workers < 0:
            raise ConfigError("lr must be > 0, samples_per_epoch and num_workers >= 0")
        _check_augment(self.augment)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        return _build(cls, data, "")

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


# Ranges that scale something and so must be positive; the zoom magnifies, so >= 1.
_SCALE_RANGES = ("depth_scale", "gain", "gamma", "dynamic_range", "aspect")


def _check_augment(a: AugmentConfig) -> None:
    """Probabilities in [0, 1] and (low, high) ranges in order, named by their config key."""
    for f in dataclasses.fields(a):
        value = getattr(a, f.name)
        if f.name.startswith("p_") and not 0.0 <= value <= 1.0:
            raise ConfigError(f"augment.{f.name} must be in [0, 1], got {value}")
        if isinstance(value, tuple) and value[0] > value[1]:
            raise ConfigError(
                f"augment.{f.name} must be [low, high] with low <= high, got {list(value)}"
            )
    for name in _SCALE_RANGES:
        if getattr(a, name)[0] <= 0.0:
            raise ConfigError(f"augment.{name} must be above 0, got {list(getattr(a, name))}")
    if a.blur_sigma[0] <= 0.0 or a.speckle[0] < 0.0 or a.noise_sigma[0] < 0.0:
        raise ConfigError(
            "augment.blur_sigma must be above 0, augment.speckle and noise_sigma >= 0"
        )
    if a.zoom[0] < 1.0:
        raise ConfigError(f"augment.zoom must be >= 1 (a magnification), got {list(a.zoom)}")
    if a.max_rotate_deg < 0 or a.max_shift < 0:
        raise ConfigError("augment.max_rotate_deg and augment.max_shift must be >= 0")


def load_config(path: str | Path | None) -> TrainConfig:
    """TrainConfig from a JSON file (None: all defaults)."""
    if path is None:
        return TrainConfig()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read training config {path}: {exc.strerror}") from exc
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file; give a JSON training config") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path}: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the training config must be a JSON object")
    try:
        return TrainConfig.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def _build(cls: type, data: Mapping[str, Any], prefix: str) -> Any:
    """Instantiate dataclass ``cls`` from a mapping, checking keys and types."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be an object")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            name = f"{prefix}{key}"
            if not name.isprintable():  # a newline or control character: keep one line
                name = name.encode("unicode_escape").decode("ascii")
            raise ConfigError(
                f"unknown config key '{name}'; valid keys: {', '.join(sorted(fields))}"
            )
        values[key] = _convert(hints[key], value, f"{prefix}{key}")
    return cls(**values)


def _convert(hint: Any, value: Any, key: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, f"{key}.")
    origin = typing.get_origin(hint)
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}' must be {_name(hint)}, got {_json(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            items = [(args[0], v) for v in value]
        elif len(args) == len(value):
            items = list(zip(args, value, strict=True))
        else:
            raise ConfigError(f"config key '{key}' must be {_name(hint)}, got {_json(value)}")
        return tuple(_convert(h, v, key) for h, v in items)
    if origin in (typing.Union, types.UnionType):
        raise ConfigError(f"config key '{key}' has an unsupported type")  # not used by our configs
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
    }.get(hint, False)
    if not ok:
        raise ConfigError(f"config key '{key}' must be {_name(hint)}, got {_json(value)}")
    return float(value) if hint is float else value


def _name(hint: Any) -> str:
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        kind = "integers" if args[0] is int else "numbers"
        return f"a list of {kind}" if args[-1] is Ellipsis else f"a list of {len(args)} {kind}"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(
        hint, str(hint)
    )


def _json(value: Any) -> str:
    kind = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list"}
    return f"{kind.get(type(value), type(value).__name__)} {json.dumps(value)[:40]}"
