"""Test helpers for the pipeline tests: a fake engine, a tiny ONNX bundle, short clips.

The fake engine reads only the mean brightness of its input: grade g peaks
at gray level (g + 1) / 6 and a black frame is "no brain", so expected
outputs can be worked out by hand. It is importable from spawned stage
processes (tests/pipeline is on sys.path, which spawn passes on).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from pivh_live.bundle import ModelBundle, make_card, sha256_file, write_json_atomic
from pivh_live.engines import Engine
from pivh_live.media import write_video

SIZE, HEAT = 32, 4
THRESHOLDS = {"pivh": 0.5, "severe": 0.5, "valid": 0.5}
_K = 400.0
_C = (np.arange(5) + 1) / 6.0


def level(grade: int) -> int:
    """Gray level at which the fake model is sure of ``grade``."""
    return round(255 * (grade + 1) / 6)


def fake_bundle() -> ModelBundle:
    return ModelBundle(
        path=Path("fake-bundle"),
        card={"sha256": {"model.onnx": "0" * 64}},
        onnx_path=Path("fake-bundle/model.onnx"),
        torch_path=None,
        name="fake",
        version="0.0.0",
        input_size=SIZE,
        thresholds=dict(THRESHOLDS),
    )


class FakeEngine(Engine):
    """Brightness model in numpy; ``delay_s`` per call simulates a slow engine."""

    name = "fake"

    def __init__(self, bundle: ModelBundle | None = None, delay_s: float = 0.0) -> None:
        super().__init__(bundle or fake_bundle())
        self.delay_s = delay_s
        self.calls = 0

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        self.calls += 1
        if self.delay_s:
            time.sleep(self.delay_s)  # stands for compute time, not for waiting on anything
        m = batch.reshape(len(batch), -1).mean(axis=1, keepdims=True).astype(np.float64)
        grade = _K * _C * m - _K * _C * _C / 2
        valid = 80.0 * m - 4.0
        cell = batch.shape[-1] // HEAT
        heat = batch.reshape(len(batch), 1, HEAT, cell, HEAT, cell).mean(axis=(3, 5)) * 8.0 - 4.0
        return {
            "grade_logits": grade.astype(np.float32),
            "valid_logit": valid.astype(np.float32),
            "heatmap_logits": heat.astype(np.float32),
        }


def make_fake_engine() -> FakeEngine:
    """Engine factory for spawned inference processes (``engine_factory``)."""
    return FakeEngine()


def make_tiny_bundle(root: Path, gain: float = _K, size: int = SIZE) -> Path:
    """The same brightness model as a real ONNX bundle (GAP + Gemm), verified by load_bundle.

    ``gain`` scales the grade logits: the default gives near one-hot
    probabilities, a small one (e.g. 4) soft ones. ``size``: the square input.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [
        numpy_helper.from_array((gain * _C).reshape(1, 5).astype(np.float32), "W"),
        numpy_helper.from_array((-gain * _C * _C / 2).astype(np.float32), "b"),
        numpy_helper.from_array(np.array([[80.0]], np.float32), "vk"),
        numpy_helper.from_array(np.array([-4.0], np.float32), "vb"),
    ]
    pool = [size // HEAT] * 2
    nodes = [
        helper.make_node("GlobalAveragePool", ["image"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["m"], axis=1),
        helper.make_node("Gemm", ["m", "W", "b"], ["grade_logits"]),
        helper.make_node("Gemm", ["m", "vk", "vb"], ["valid_logit"]),
        helper.make_node("AveragePool", ["image"], ["heatmap_logits"], kernel_shape=pool,
                         strides=pool),
    ]  # fmt: skip
    f = TensorProto.FLOAT
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("image", f, ["N", 1, size, size])],
        [
            helper.make_tensor_value_info("grade_logits", f, ["N", 5]),
            helper.make_tensor_value_info("valid_logit", f, ["N", 1]),
            helper.make_tensor_value_info("heatmap_logits", f, ["N", 1, HEAT, HEAT]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    root.mkdir(parents=True, exist_ok=True)
    onnx.save(model, root / "model.onnx")
    card = make_card(
        name="tiny-brightness", version="0.0.1", created="2026-01-01T00:00:00Z",
        input_size=size, heatmap_size=HEAT, thresholds=THRESHOLDS, metrics={}, dataset={},
        sha256={"model.onnx": sha256_file(root / "model.onnx")}, software={},
    )  # fmt: skip
    write_json_atomic(root / "model.json", card)
    return root


def grade_frames(grades: list[int], size: tuple[int, int] = (48, 48), seed: int = 0) -> np.ndarray:
    """Frames at each grade's gray level with a little seeded noise (so motion is not 0).

    A grade of -1 gives a black frame (no brain).
    """
    rng = np.random.default_rng(seed)
    out = np.empty((len(grades), *size), np.uint8)
    for i, g in enumerate(grades):
        base = 0 if g < 0 else level(g)
        noise = rng.integers(-3, 4, size=size) if g >= 0 else 0
        out[i] = np.clip(base + noise, 0, 255)
    return out


def write_clip(path: Path, frames: np.ndarray, fps: float = 25.0) -> Path:
    """Lossless (FFV1) clip, so decoded pixels equal ``frames``."""
    return write_video(path, frames, fps, codec="ffv1")


# --- stage targets for supervisor tests (run in spawned processes) -----------------


def stage_exit(config: int, stop, beat) -> int:
    """Exit at once with code ``config`` (0 finished, else a crash), after one heartbeat."""
    if config == 0:
        beat.send(state="done")
    return config


def stage_silent(config: object, stop, beat) -> int:
    """Run without ever sending a heartbeat: looks hung to the supervisor."""
    import threading

    idle = threading.Event()
    while not stop():
        idle.wait(0.05)
    return 0


def stage_beating(config: object, stop, beat) -> int:
    """A healthy stage: heartbeats until stopped."""
    import threading

    idle = threading.Event()
    n = 0
    while not stop():
        n += 1
        beat.maybe(lambda n=n: {"loops": n})
        idle.wait(0.02)
    return 0
