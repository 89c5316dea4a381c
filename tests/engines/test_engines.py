import importlib.util
from pathlib import Path

import numpy as np
import pytest

from pivh_live.bundle import CARD_FILE, ONNX_FILE, load_bundle, make_card, sha256_file
from pivh_live.bundle import write_json_atomic as write_json
from pivh_live.engines import (
    Engine,
    available_engines,
    create_engine,
    engine_names,
    register_engine,
    scores_from_outputs,
)
from pivh_live.engines import base as engines_base
from pivh_live.errors import EngineError
from pivh_live.preprocess import preprocess_batch

onnx = pytest.importorskip("onnx", reason="onnx is in the train extra")
from onnx import TensorProto, helper  # noqa: E402

SIZE, HEATMAP = 64, 8
WG = np.array([[0.5, -1.0, 2.0, 0.0, 3.0]], dtype=np.float32)


def _write_tiny_bundle(root: Path) -> Path:
    """Hand-built graph with known outputs: grade = mean * WG, valid = mean, heatmap = 8x8 means."""
    f = TensorProto.FLOAT
    k = SIZE // HEATMAP
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["image"], ["gap"]),
            helper.make_node("Flatten", ["gap"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "wg"], ["grade_logits"]),
            helper.make_node("Identity", ["flat"], ["valid_logit"]),
            helper.make_node(
                "AveragePool", ["image"], ["heatmap_logits"], kernel_shape=[k, k], strides=[k, k]
            ),
        ],
        "tiny",
        [helper.make_tensor_value_info("image", f, ["N", 1, SIZE, SIZE])],
        [
            helper.make_tensor_value_info("grade_logits", f, ["N", 5]),
            helper.make_tensor_value_info("valid_logit", f, ["N", 1]),
            helper.make_tensor_value_info("heatmap_logits", f, ["N", 1, HEATMAP, HEATMAP]),
        ],
        initializer=[helper.make_tensor("wg", f, [1, 5], WG.ravel().tolist())],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    root.mkdir(parents=True)
    onnx.save(model, str(root / ONNX_FILE))
    card = make_card(
        name="tiny",
        version="0.0.1",
        created="2025-01-01T00:00:00+00:00",
        input_size=SIZE,
        heatmap_size=HEATMAP,
        thresholds={"pivh": 0.5, "severe": 0.5, "valid": 0.5},
        metrics={},
        dataset={},
        sha256={ONNX_FILE: sha256_file(root / ONNX_FILE)},
        software={},
    )
    write_json(root / CARD_FILE, card)
    return root


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return load_bundle(_write_tiny_bundle(tmp_path_factory.mktemp("engines") / "tiny"))


@pytest.fixture(scope="module")
def regions():
    rng = np.random.default_rng(7)
    return [rng.integers(0, 256, (h, w), dtype=np.uint8) for h, w in [(48, 80), (64, 64), (90, 30)]]


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def test_registry_lists_the_three_engines():
    assert {"onnxruntime", "torch", "tensorrt"} <= set(engine_names())
    avail = available_engines()
    assert avail["onnxruntime"] is None
    expect_torch = None if importlib.util.find_spec("torch") else "train"
    assert (avail["torch"] is None) == (expect_torch is None)


def test_tensorrt_unavailable_here_with_reason():
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed on this machine")
    reason = available_engines()["tensorrt"]
    assert reason is not None and "TensorRT" in reason
    with pytest.raises(EngineError, match="unavailable: the TensorRT Python package"):
        create_engine("tensorrt", "models/none")


def test_unknown_engine_lists_names(bundle):
    with pytest.raises(EngineError, match=r"unknown engine 'tflite'; choose one of .*onnxruntime"):
        create_engine("tflite", bundle)


def test_unknown_option_lists_options(bundle):
    with pytest.raises(EngineError, match=r"no option\(s\) \['thread'\].*'threads'"):
        create_engine("onnxruntime", bundle, thread=4)


def test_bad_onnxruntime_options(bundle):
    with pytest.raises(EngineError, match="device must be"):
        create_engine("onnxruntime", bundle, device="tpu")
    with pytest.raises(EngineError, match="threads"):
        create_engine("onnxruntime", bundle, threads=0)


def test_onnxruntime_cuda_requested_without_provider(bundle):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("CUDA provider present")
    with pytest.raises(EngineError, match="no CUDA provider"):
        create_engine("onnxruntime", bundle, device="cuda")


def test_torch_engine_needs_model_pt(bundle):
    pytest.importorskip("torch")
    with pytest.raises(EngineError, match=r"has no model\.pt"):
        create_engine("torch", bundle)


def test_onnxruntime_infer_known_outputs(bundle, regions):
    batch = preprocess_batch(regions, SIZE)
    with create_engine("onnxruntime", bundle, threads=1) as engine:
        out = engine.infer(batch)
    means = batch.mean(axis=(1, 2, 3))
    np.testing.assert_allclose(out["valid_logit"][:, 0], means, atol=1e-6)
    np.testing.assert_allclose(out["grade_logits"], means[:, None] * WG, atol=1e-5)
    blocks = batch.reshape(3, 1, HEATMAP, 8, HEATMAP, 8).mean(axis=(3, 5))
    np.testing.assert_allclose(out["heatmap_logits"], blocks, atol=1e-6)


def test_score_batch_applies_softmax_and_sigmoid(bundle, regions):
    with create_engine("onnxruntime", bundle) as engine:
        scores = engine.score_batch(regions)
        raw = engine.infer(preprocess_batch(regions, SIZE))
        single = engine.score(regions[1])
    assert len(scores) == 3
    for i, s in enumerate(scores):
        logits = raw["grade_logits"][i]
        expected = np.exp(logits) / np.exp(logits).sum()
        np.testing.assert_allclose(s.grade_probs, expected, rtol=1e-5)
        assert s.grade_probs.sum() == pytest.approx(1.0, abs=1e-6)
        assert s.p_pivh == pytest.approx(1.0 - expected[0], abs=1e-6)
        assert s.p_valid == pytest.approx(_sigmoid(raw["valid_logit"][i, 0]), abs=1e-6)
        assert s.heatmap.shape == (HEATMAP, HEATMAP) and s.heatmap.dtype == np.float32
        np.testing.assert_allclose(s.heatmap, _sigmoid(raw["heatmap_logits"][i, 0]), atol=1e-6)
    np.testing.assert_array_equal(single.grade_probs, scores[1].grade_probs)
    assert engine.score_batch([]) == []


def test_infer_rejects_wrong_batches(bundle):
    with create_engine("onnxruntime", bundle) as engine:
        with pytest.raises(EngineError, match="float32"):
            engine.infer(np.zeros((1, 1, SIZE, SIZE), np.float64))
        with pytest.raises(EngineError, match=r"\(N, 1, 64, 64\)"):
            engine.infer(np.zeros((1, 1, 32, 32), np.float32))
        with pytest.raises(EngineError, match="batches of"):
            engine.infer(np.zeros((0, 1, SIZE, SIZE), np.float32))


def test_scores_from_outputs_is_stable_for_extreme_logits():
    out = {
        "grade_logits": np.array([[1000.0, -1000.0, 0.0, 0.0, 0.0]], np.float32),
        "valid_logit": np.array([[-1000.0]], np.float32),
        "heatmap_logits": np.full((1, 1, 2, 2), 1000.0, np.float32),
    }
    (s,) = scores_from_outputs(out)
    assert np.all(np.isfinite(s.grade_probs)) and s.grade_probs[0] == pytest.approx(1.0)
    assert s.p_valid == pytest.approx(0.0) and np.all(s.heatmap == pytest.approx(1.0))
    bad = dict(out, valid_logit=np.zeros((2, 1), np.float32))
    with pytest.raises(EngineError, match="disagree on batch size"):
        scores_from_outputs(bad)


class _CountingEngine(Engine):
    max_batch = 2

    def __init__(self, bundle, *, scale: float = 1.0) -> None:
        super().__init__(bundle)
        self.calls: list[int] = []
        self.closed = False
        self.scale = scale

    def infer(self, batch):
        batch = self._check_batch(batch)
        n = batch.shape[0]
        self.calls.append(n)
        mean = batch.mean(axis=(1, 2, 3)) * self.scale
        return {
            "grade_logits": np.repeat(mean[:, None], 5, axis=1),
            "valid_logit": mean[:, None],
            "heatmap_logits": np.zeros((n, 1, HEATMAP, HEATMAP), np.float32),
        }

    def close(self):
        self.closed = True


def test_register_custom_engine_splits_batches_and_closes(bundle, regions, monkeypatch):
    monkeypatch.setattr(engines_base, "_REGISTRY", dict(engines_base._REGISTRY))
    register_engine("counting")(_CountingEngine)
    assert "counting" in available_engines()
    with create_engine("counting", bundle, scale=2.0) as engine:
        scores = engine.score_batch(regions + regions[:2])
        assert engine.calls == [2, 2, 1]
        assert len(scores) == 5
        np.testing.assert_allclose(scores[0].grade_probs, np.full(5, 0.2), atol=1e-6)
    assert engine.closed
    with pytest.raises(ValueError, match="already registered"):
        register_engine("onnxruntime")(_CountingEngine)
    with pytest.raises(EngineError, match=r"batches of 1\.\.2"):
        engine.infer(np.zeros((3, 1, SIZE, SIZE), np.float32))


def test_live_modes_run_the_cpu_engines_with_one_thread_unless_told() -> None:
    from pivh_live.engines import LIVE_CPU_THREADS, live_engine_options

    assert LIVE_CPU_THREADS == 1
    assert live_engine_options("onnxruntime", None) == {"threads": 1}
    assert live_engine_options("torch", 3) == {"threads": 3}
    assert live_engine_options("tensorrt", None) == {}


@pytest.mark.parametrize(("spin", "flag"), [(False, "0"), (True, "1")])
def test_onnxruntime_pool_spins_only_when_asked(bundle, spin: bool, flag: str) -> None:
    with create_engine("onnxruntime", bundle, spin=spin) as engine:
        options = engine._session.get_session_options()
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == flag
        assert options.get_session_config_entry("session.inter_op.allow_spinning") == flag


class _SidedEngine(Engine):
    """Grade logits from the left and right halves, heatmap = 8x8 block means: not symmetric."""

    def __init__(self, bundle, *, max_batch: int | None = None) -> None:
        super().__init__(bundle)
        self.max_batch = max_batch
        self.calls: list[int] = []

    def infer(self, batch):
        batch = self._check_batch(batch)
        n, half = batch.shape[0], SIZE // 2
        self.calls.append(n)
        left = batch[..., :half].mean(axis=(1, 2, 3))
        right = batch[..., half:].mean(axis=(1, 2, 3))
        zeros = np.zeros(n, np.float32)
        k = SIZE // HEATMAP
        heat = batch.reshape(n, 1, HEATMAP, k, HEATMAP, k).mean(axis=(3, 5))
        return {
            "grade_logits": 8 * np.stack([left, right, zeros, zeros, zeros], axis=1),
            "valid_logit": 4 * (left - right)[:, None],
            "heatmap_logits": 6 * heat - 3,
        }


def _sided(regions):
    """The regions with a left-to-right ramp added, so their halves differ."""
    return [(r // 2 + np.linspace(0, 120, r.shape[1])[None, :]).astype(np.uint8) for r in regions]


def _hflip_bundle(bundle):
    import dataclasses

    return dataclasses.replace(bundle, tta="hflip")


def test_hflip_averages_each_frame_with_its_mirror(bundle, regions):
    batch = preprocess_batch(_sided(regions), SIZE)
    plain = _SidedEngine(bundle).score_preprocessed(batch)
    mirrored = _SidedEngine(bundle).score_preprocessed(np.ascontiguousarray(batch[..., ::-1]))
    engine = _SidedEngine(_hflip_bundle(bundle))
    got = engine.score_preprocessed(batch)
    assert engine.calls == [2 * len(regions)]  # frames and mirrors in one call
    for g, a, b in zip(got, plain, mirrored, strict=True):
        np.testing.assert_allclose(g.grade_probs, (a.grade_probs + b.grade_probs) / 2, atol=1e-6)
        assert g.p_valid == pytest.approx((a.p_valid + b.p_valid) / 2)
        # The mirror's heatmap is flipped back: block means are mirror-equivariant, so
        # the averaged map is the plain one, and it is not when left unflipped.
        np.testing.assert_allclose(g.heatmap, a.heatmap, atol=1e-6)
        assert np.abs(a.heatmap - b.heatmap).max() > 0.05
        # The left/right logits swap in the mirror, so TTA changes the probabilities.
        assert np.abs(g.grade_probs - a.grade_probs).max() > 0.05
        assert g.p_valid == pytest.approx(0.5, abs=1e-6)


@pytest.mark.parametrize(("max_batch", "calls"), [(1, [1] * 6), (2, [2, 2, 2]), (5, [4, 2])])
def test_hflip_respects_the_engines_batch_limit(bundle, regions, max_batch, calls):
    batch = preprocess_batch(_sided(regions), SIZE)
    want = _SidedEngine(_hflip_bundle(bundle)).score_preprocessed(batch)
    engine = _SidedEngine(_hflip_bundle(bundle), max_batch=max_batch)
    got = engine.score_preprocessed(batch)
    assert engine.calls == calls
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g.grade_probs, w.grade_probs, atol=1e-7)
        np.testing.assert_allclose(g.heatmap, w.heatmap, atol=1e-7)


def test_onnxruntime_engine_reads_hflip_from_the_card(tmp_path, regions):
    import json

    root = _write_tiny_bundle(tmp_path / "tiny")
    card = json.loads((root / CARD_FILE).read_text())
    assert card["input"]["tta"] == "none"
    card["input"]["tta"] = "hflip"
    write_json(root / CARD_FILE, card)
    flipped = load_bundle(root)
    assert flipped.tta == "hflip"
    with create_engine("onnxruntime", flipped) as engine:
        got = engine.score_batch(regions)
        mirrored = engine.infer(np.ascontiguousarray(preprocess_batch(regions, SIZE)[..., ::-1]))
    # The tiny graph's grade and valid outputs are mirror-invariant (global means) and its
    # heatmap is mirror-equivariant, so TTA must return exactly the mirror's flipped-back map.
    np.testing.assert_allclose(
        got[1].heatmap, _sigmoid(mirrored["heatmap_logits"][1, 0])[:, ::-1], atol=1e-6
    )
