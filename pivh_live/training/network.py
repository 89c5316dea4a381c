"""PivhNet: a small attention CNN for per-frame PIVH detection and Papile grading.

After Peng et al. (Pediatr Radiol 2025, a CNN with attention), sized for live
use on a CPU: a residual depthwise-separable backbone (BatchNorm + ReLU, plain
convolutions only so ONNX Runtime and the TensorRT 10 parser take it), three heads:

- ``grade_logits`` (N, 5): Papile grade 0-IV visible in this frame, from
  attention pooling over the stride-32 features. One attention head is the
  (pooled) haemorrhage heatmap itself, so the mask supervision teaches the
  grade head where to look; the others are learned. With
  ``config.lesion_pool`` the stride-8 features under the heatmap's softmax
  are pooled too, so the head also sees the lesion-like spot in detail. With
  ``config.mirror_context`` each attention map also pools the stride-32
  features mirrored left-right, i.e. what lies at the same place in the other
  hemisphere of a coronal view.
- ``valid_logit`` (N, 1): the frame shows a brain (not blank / off-head).
- ``heatmap_logits`` (N, 1, 32, 32): haemorrhage localisation from the stride-8
  features plus upsampled stride-32 context.

torch is imported here at module level: this module is only imported by the
training and torch-engine code paths, which need it anyway.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pivh_live.training.config import ModelConfig

log = logging.getLogger(__name__)

OUTPUT_NAMES: tuple[str, ...] = ("grade_logits", "valid_logit", "heatmap_logits")
INPUT_NAME = "image"


def _conv_bn(c_in: int, c_out: int, k: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
    )


class DownBlock(nn.Module):
    """Stride-2 depthwise-separable conv: dw3x3/2 -> BN -> ReLU -> pw1x1 -> BN -> ReLU."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.dw = _conv_bn(c_in, c_in, 3, 2, groups=c_in)
        self.pw = _conv_bn(c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.pw(F.relu(self.dw(x))))


class ResBlock(nn.Module):
    """Residual depthwise-separable block with a 2x pointwise expansion."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.dw = _conv_bn(c, c, 3, groups=c)
        self.expand = _conv_bn(c, 2 * c, 1)
        self.project = _conv_bn(2 * c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dw(x)
        y = F.relu(self.expand(y))
        return F.relu(x + self.project(y))


class PivhNet(nn.Module):
    """Per-frame network; input (N, 1, S, S) float32 in [0, 1], S = config.input_size."""

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config or ModelConfig()
        cfg = self.config
        w = cfg.width
        chans = [w * m for m in cfg.stage_mult]
        # Full convs for the two first strides: cheap at 1-16 channels and faster
        # than depthwise on CPUs at high resolution.
        s = max(4, w // 2)
        self.stem = nn.Sequential(
            _conv_bn(1, s, 3, 2), nn.ReLU(), _conv_bn(s, chans[0], 3, 2), nn.ReLU()
        )
        stages: list[nn.Module] = []
        c_prev = chans[0]
        for i, (c, n) in enumerate(zip(chans, cfg.depth, strict=True)):
            blocks: list[nn.Module] = [] if i == 0 else [DownBlock(c_prev, c)]
            blocks += [ResBlock(c) for _ in range(n)]
            stages.append(nn.Sequential(*blocks))
            c_prev = c
        self.stages = nn.ModuleList(stages)
        c8, c32 = chans[1], chans[3]
        hm = max(16, c8)
        self.context = _conv_bn(c32, hm, 1)
        self.lateral = _conv_bn(c8, hm, 1)
        self.heatmap_head = nn.Sequential(
            _conv_bn(hm, hm, 3, groups=hm), nn.ReLU(), nn.Conv2d(hm, 1, 1)
        )
        self.attention = nn.Conv2d(c32, cfg.attention_heads, 1)
        n_heads = cfg.attention_heads + 1
        self.dropout = nn.Dropout(cfg.dropout)
        fine = hm if cfg.lesion_pool else 0
        pooled = c32 * n_heads * (2 if cfg.mirror_context else 1)
        self.grade_head = nn.Linear(pooled + c32 + fine, cfg.n_grades)
        self.valid_head = nn.Linear(c32, 1)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.stem(image)
        x = self.stages[0](x)
        f8 = self.stages[1](x)
        f32 = self.stages[3](self.stages[2](f8))
        context = F.interpolate(self.context(f32), scale_factor=4.0, mode="nearest")
        fused = F.relu(self.lateral(f8) + context)
        heatmap_logits = self.heatmap_head(fused)
        # Attention pooling: learned heads plus the heatmap pooled to stride 32.
        att = torch.cat([self.attention(f32), F.avg_pool2d(heatmap_logits, 4)], dim=1)
        att = torch.softmax(att.flatten(2), dim=-1)  # (N, heads, HW)
        grid = f32
        if self.config.mirror_context:  # each place beside its mirror image
            grid = torch.cat([f32, torch.flip(f32, dims=(3,))], dim=1)
        feats = grid.flatten(2).transpose(1, 2)  # (N, HW, C or 2C)
        pooled = torch.matmul(att, feats).flatten(1)  # (N, heads * C or 2C)
        gap = f32.mean(dim=(2, 3))
        parts = [pooled, gap]
        if self.config.lesion_pool:
            spot = torch.softmax(heatmap_logits.flatten(2), dim=-1)  # (N, 1, HW8)
            parts.append(torch.matmul(spot, fused.flatten(2).transpose(1, 2)).flatten(1))
        grade_logits = self.grade_head(self.dropout(torch.cat(parts, dim=1)))
        valid_logit = self.valid_head(gap)
        return grade_logits, valid_logit, heatmap_logits


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: PivhNet) -> int:
    """Multiply-accumulates x 2 of one forward pass at batch 1 (conv and linear layers)."""
    total = 0

    def hook(module: nn.Module, _inp: Any, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            total += 2 * out.numel() * k * module.in_channels // module.groups
        elif isinstance(module, nn.Linear):
            total += 2 * module.in_features * module.out_features

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            size = model.config.input_size
            model(torch.zeros(1, 1, size, size))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total


def soft_dice(p: torch.Tensor, target: torch.Tensor, mode: str) -> torch.Tensor:
    """1 - soft Dice of probabilities ``p`` against ``target`` (both (N, 1, H, W), 0..1).

    "batch": one ratio over all pixels of the batch (smoothing 1). "frame": the mean of
    one ratio per frame whose target has a lesion; 0 when no frame has one.
    """
    if mode == "batch":
        return 1.0 - (2.0 * (p * target).sum() + 1.0) / (p.sum() + target.sum() + 1.0)
    inter = (p * target).flatten(1).sum(dim=1)
    sizes = target.flatten(1).sum(dim=1)
    ratio = (2.0 * inter + 1.0) / (p.flatten(1).sum(dim=1) + sizes + 1.0)
    lesion = sizes > 0
    if not bool(lesion.any()):
        return p.sum() * 0.0
    return 1.0 - ratio[lesion].mean()


def grade_cross_entropy(
    logits: torch.Tensor,
    probs: torch.Tensor,
    target: torch.Tensor,
    class_weights: torch.Tensor,
    label_smoothing: float,
    focal_gamma: float,
) -> torch.Tensor:
    """Class-weighted, label-smoothed cross-entropy, focal-modulated when ``focal_gamma`` > 0.

    With ``focal_gamma`` 0 this is exactly ``F.cross_entropy(weight=..., label_smoothing=...)``,
    torch's per-frame weighted terms ``l_i`` summed over ``sum(w[target_i])``. Otherwise each
    ``l_i`` is scaled by ``(1 - p_i) ** focal_gamma``, ``p_i`` the predicted probability of the
    true grade (Lin et al., focal loss), with the same normaliser, so the limit
    ``focal_gamma`` -> 0 is the plain loss.
    """
    if focal_gamma == 0.0:
        return F.cross_entropy(
            logits, target, weight=class_weights, label_smoothing=label_smoothing
        )
    per = F.cross_entropy(  # already weighted per frame, as the mean reduction weighs it
        logits, target, weight=class_weights, label_smoothing=label_smoothing, reduction="none"
    )
    p_true = probs.gather(1, target[:, None])[:, 0]
    modulation = (1.0 - p_true).clamp(min=0.0) ** focal_gamma
    return (modulation * per).sum() / class_weights[target].sum()


def compute_loss(
    outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    batch: dict[str, torch.Tensor],
    class_weights: torch.Tensor,
    config: Any,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum of the training losses; ``config`` is a TrainConfig.

    - grade: class-weighted cross-entropy (label smoothing; focal when
      ``config.focal_gamma`` > 0, see ``grade_cross_entropy``) on graded frames;
    - ordinal: BCE of P(grade >= k), k = I..IV, from the same softmax, so that
      predicting III for a IV costs less than predicting 0 (quadratic kappa);
    - valid: BCE on every frame;
    - heatmap: BCE (positive-weighted, lesions are small) + soft Dice
      (``config.heatmap_dice``, see ``soft_dice``) on valid frames of cases
      that have masks.
    """
    grade_logits, valid_logit, heatmap_logits = outputs
    grade = batch["grade"]
    graded = grade >= 0
    zero = grade_logits.sum() * 0.0
    ce = ordinal = zero
    if bool(graded.any()):
        logits, target = grade_logits[graded].float(), grade[graded]
        probs = torch.softmax(logits, dim=1)
        ce = grade_cross_entropy(
            logits, probs, target, class_weights, config.label_smoothing, config.focal_gamma
        )
        at_least = (1.0 - torch.cumsum(probs, dim=1)[:, :-1]).clamp(1e-6, 1.0 - 1e-6)
        ks = torch.arange(1, probs.shape[1], device=probs.device)
        cum_target = (target[:, None] >= ks[None, :]).float()
        per = F.binary_cross_entropy(at_least, cum_target, reduction="none").mean(dim=1)
        w = class_weights[target]
        ordinal = (per * w).sum() / w.sum()
    valid_loss = F.binary_cross_entropy_with_logits(valid_logit[:, 0].float(), batch["valid"])
    use = (batch["valid"] > 0.5) & (batch["has_heatmap"] > 0.5)
    heat = zero
    if bool(use.any()):
        logits, target = heatmap_logits[use].float(), batch["heatmap"][use]
        pos = torch.tensor(config.heatmap_pos_weight, device=logits.device)
        bce = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pos)
        heat = bce + soft_dice(torch.sigmoid(logits), target, config.heatmap_dice)
    total = (
        config.w_grade * ce
        + config.w_ordinal * ordinal
        + config.w_valid * valid_loss
        + config.w_heatmap * heat
    )
    parts = {
        "total": float(total.detach()),
        "grade": float(ce.detach()),
        "ordinal": float(ordinal.detach()),
        "valid": float(valid_loss.detach()),
        "heatmap": float(heat.detach()),
    }
    return total, parts
