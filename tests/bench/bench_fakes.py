"""Test helpers for the benchmark tests: a fixed-output engine and a synthetic cached clip.

The engine returns the same logits for every frame (the benchmark code
under test only times and counts); the clip is written straight into the
clip cache so no phantom is rendered.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pivh_live.bench.clip import CLIP_FORMAT
from pivh_live.bundle import ModelBundle
from pivh_live.engines import Engine
from pivh_live.frames import Roi

SIZE = 32
ROI = Roi(40, 30, 160, 120)


class FixedEngine(Engine):
    name = "bench-fixed"

    def __init__(self) -> None:
        super().__init__(
            ModelBundle(
                path=Path("fixed"),
                card={},
                onnx_path=Path("fixed/model.onnx"),
                torch_path=None,
                name="fixed",
                version="9.9.9",
                input_size=SIZE,
                thresholds={"pivh": 0.5, "severe": 0.5, "valid": 0.5},
            )
        )
        self.calls = 0

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        batch = self._check_batch(batch)
        self.calls += 1
        n = len(batch)
        return {
            "grade_logits": np.tile(np.array([[0.0, 0.0, 0.0, 3.0, 0.0]], np.float32), (n, 1)),
            "valid_logit": np.full((n, 1), 5.0, np.float32),
            "heatmap_logits": np.zeros((n, 1, 4, 4), np.float32),
        }


def make_fixed_engine() -> FixedEngine:
    return FixedEngine()


def write_cached_clip(cache: Path, width: int = 240, height: int = 180, n: int = 12,
                      seed: int = 0, grade: int = 3) -> np.ndarray:  # fmt: skip
    """A seeded noise clip with a moving image inside `ROI`, stored where the cache looks."""
    rng = np.random.default_rng(seed)
    frames = np.full((n, height, width), 20, np.uint8)
    for t in range(n):
        frames[t, ROI.y : ROI.y + ROI.h, ROI.x : ROI.x + ROI.w] = rng.integers(
            0, 256, (ROI.h, ROI.w), dtype=np.uint8
        )
    cache.mkdir(parents=True, exist_ok=True)
    stem = f"screen-v{CLIP_FORMAT}-{width}x{height}-n{n}-s{seed}-g{grade}"
    np.save(cache / f"{stem}.npy", frames)
    (cache / f"{stem}.json").write_text(json.dumps({"roi": [ROI.x, ROI.y, ROI.w, ROI.h]}))
    return frames
