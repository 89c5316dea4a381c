from pathlib import Path

import numpy as np
import pytest

from pivh_live.bench.engine_loop import bench_engine_loop
from pivh_live.bundle import ModelBundle
from pivh_live.engines import Engine

SIZE = 32


class _RecordingEngine(Engine):
    name = "recording"

    def __init__(self, tta: str = "none") -> None:
        bundle = ModelBundle(
            path=Path("."),
            card={},
            onnx_path=Path("model.onnx"),
            torch_path=None,
            name="fake",
            version="0",
            input_size=SIZE,
            thresholds={"pivh": 0.5, "severe": 0.5, "valid": 0.5},
            tta=tta,
        )
        super().__init__(bundle)
        self.batches: list[np.ndarray] = []

    def infer(self, batch):
        batch = self._check_batch(batch)
        self.batches.append(batch)
        n = batch.shape[0]
        return {
            "grade_logits": np.zeros((n, 5), np.float32),
            "valid_logit": np.zeros((n, 1), np.float32),
            "heatmap_logits": np.zeros((n, 1, 4, 4), np.float32),
        }


def test_engine_loop_times_n_calls_after_warmup():
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (40, 60), dtype=np.uint8) for _ in range(5)]
    engine = _RecordingEngine()
    result = bench_engine_loop(engine, frames, n=30, warmup=4, batch=2)
    assert len(engine.batches) == 34
    assert all(b.shape == (2, 1, SIZE, SIZE) for b in engine.batches)
    assert result["engine"] == "recording" and result["batch"] == 2
    lat = result["latency_ms"]
    assert lat["count"] == 30 and 0 < lat["min"] <= lat["median"] <= lat["max"]
    assert result["per_frame_ms_median"] == pytest.approx(lat["median"] / 2)
    assert result["fps"] == pytest.approx(2000.0 / lat["median"])
    # Preprocessed once up front: batches repeat with the frame cycle, not re-made per call.
    assert np.shares_memory(engine.batches[0], engine.batches[2])
    assert not np.shares_memory(engine.batches[0], engine.batches[1])
    assert result["tta"] == "none"


def test_engine_loop_times_the_mirror_too_under_hflip():
    frames = [np.tile(np.arange(60, dtype=np.uint8), (40, 1))]
    engine = _RecordingEngine(tta="hflip")
    result = bench_engine_loop(engine, frames, n=5, warmup=1, batch=3)
    assert result["tta"] == "hflip" and result["batch"] == 3
    assert [b.shape[0] for b in engine.batches] == [6] * 6  # each call: 3 frames + 3 mirrors
    np.testing.assert_array_equal(engine.batches[0][3:], engine.batches[0][:3, ..., ::-1])


def test_engine_loop_rejects_bad_arguments():
    engine = _RecordingEngine()
    with pytest.raises(ValueError, match="at least one frame"):
        bench_engine_loop(engine, [], n=1)
    with pytest.raises(ValueError, match="n >= 1"):
        bench_engine_loop(engine, [np.zeros((4, 4), np.uint8)], n=0)
