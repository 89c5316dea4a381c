"""Frozen dataclasses that cross stage boundaries.

Capture time is stamped once, at capture, with ``time.monotonic_ns()`` and
carried unchanged through every later stage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GRADE_NAMES: tuple[str, ...] = ("0", "I", "II", "III", "IV")
N_GRADES = 5


@dataclass(frozen=True)
class Roi:
    """Image region inside a full frame, in pixels."""

    x: int
    y: int
    w: int
    h: int

    def crop(self, image: np.ndarray) -> np.ndarray:
        return image[self.y : self.y + self.h, self.x : self.x + self.w]


@dataclass(frozen=True)
class Frame:
    """One captured frame: pixels plus the stamps taken at capture."""

    seq: int
    t_capture_ns: int
    media_time_s: float
    image: np.ndarray


@dataclass(frozen=True)
class Score:
    """Per-frame model output after softmax/sigmoid.

    ``grade_probs`` has 5 entries (Papile 0-IV) summing to 1; ``p_pivh`` is
    1 - grade_probs[0]; ``p_valid`` is the probability that the frame shows a
    brain; ``heatmap`` is a small float32 map in [0, 1] over the model input.
    """

    grade_probs: np.ndarray
    p_valid: float
    heatmap: np.ndarray

    @property
    def p_pivh(self) -> float:
        return float(1.0 - self.grade_probs[0])
