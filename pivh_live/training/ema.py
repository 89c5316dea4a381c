"""Exponential moving average of a model's weights (timm's ModelEma, in brief).

The averaged copy is what is validated, checkpointed as ``state_dict`` and
exported; the raw weights keep training. Every floating-point entry of the
state dict (parameters and BatchNorm running statistics) is averaged; integer
buffers (BatchNorm's batch counter) are copied. The decay ramps up as
``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so the random initial
weights are forgotten within the first few hundred steps.
"""

from __future__ import annotations

import copy
from typing import Any


class WeightAverage:
    """EMA of ``model``'s state, updated after each optimizer step with `update`."""

    def __init__(self, model: Any, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.updates = 0
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        # state_dict tensors share storage with the modules' parameters and buffers,
        # and the optimizer updates parameters in place, so the pairs stay valid.
        ours, theirs = self.module.state_dict(), model.state_dict()
        if list(ours) != list(theirs):
            raise ValueError("EMA copy and model have different state keys")
        self._pairs = [(ours[k], theirs[k]) for k in ours]

    def current_decay(self) -> float:
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    def update(self) -> None:
        """Move the average towards the model's current weights."""
        import torch

        self.updates += 1
        d = self.current_decay()
        with torch.no_grad():
            for avg, cur in self._pairs:
                if avg.dtype.is_floating_point:
                    avg.lerp_(cur.detach(), 1.0 - d)
                else:
                    avg.copy_(cur)

    def load(self, state: dict[str, Any], updates: int) -> None:
        """Restore a saved average (from a checkpoint's ``state_dict``) for resuming."""
        self.module.load_state_dict(state)
        self.updates = int(updates)
