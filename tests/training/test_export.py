"""Export round trip: checkpoint -> bundle -> ONNX Runtime vs torch engine (the CI parity test)."""

import argparse
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="export needs the train extra")
onnx = pytest.importorskip("onnx", reason="export needs the train extra")

from pivh_live.bundle import CARD_FILE, ONNX_FILE, TORCH_FILE, load_bundle, sha256_file  # noqa: E402
from pivh_live.engines import create_engine  # noqa: E402
from pivh_live.errors import ModelBundleError  # noqa: E402
from pivh_live.training import export as export_mod  # noqa: E402
from pivh_live.training.export import (  # noqa: E402
    LOGIT_TOLERANCE,
    PROB_TOLERANCE,
    check_parity,
    export_bundle,
    export_from_cli,
    load_checkpoint,
    phantom_like_batch,
)
from pivh_live.training.network import ModelConfig, PivhNet  # noqa: E402

TINY = ModelConfig(input_size=64, width=4, depth=(1, 1, 1, 1))
THRESHOLDS = {"pivh": 0.42, "severe": 0.31, "valid": 0.6}


def _random_model(seed: int) -> PivhNet:
    torch.manual_seed(seed)
    model = PivhNet(TINY)
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        # Non-trivial BatchNorm statistics, so BN folding in the exporters is exercised.
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=gen))
            m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=gen))
    return model.eval()


def _checkpoint(path: Path, model: PivhNet, **overrides) -> Path:
    ckpt = {
        "format": "pivh-live-checkpoint/1",
        "model_config": dataclasses.asdict(TINY),
        "state_dict": model.state_dict(),
        "thresholds": THRESHOLDS,
        "train_config": {"epochs": 1},
        "val_metrics": {"auc_pivh": 0.5},
        "epoch": 3,
        "data": {
            "train": "data/train",
            "n_train_cases": 10,
            "n_val_cases": 4,
            "dataset_meta": {"generator": "pivh-live phantom", "seed": 1},
        },
        "preprocess": {"input_size": 64, "letterbox": "pad-square-centre-zero", "scale": "1/255"},
    }
    ckpt.update(overrides)
    torch.save(ckpt, path)
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    model = _random_model(0)
    ckpt = _checkpoint(root / "best.pt", model)
    out = export_bundle(ckpt, root / "models" / "tiny", version="1.2.3")
    return out, model


@pytest.mark.slow  # one dynamo export (~6 s) shared by the module
def test_round_trip_engine_parity(exported):
    bundle_dir, _ = exported
    bundle = load_bundle(bundle_dir)
    rng = np.random.default_rng(11)
    regions = [rng.integers(0, 256, (h, w), dtype=np.uint8) for h, w in [(120, 200), (64, 64)]]
    regions.append((phantom_like_batch(1, 96, seed=3)[0, 0] * 255).astype(np.uint8))
    with (
        create_engine("onnxruntime", bundle) as ort_engine,
        create_engine("torch", bundle, device="cpu") as torch_engine,
    ):
        a, b = ort_engine.score_batch(regions), torch_engine.score_batch(regions)
        raw_a = ort_engine.infer(phantom_like_batch(5, 64))
        raw_b = torch_engine.infer(phantom_like_batch(5, 64))
    for sa, sb in zip(a, b, strict=True):
        assert np.max(np.abs(sa.grade_probs - sb.grade_probs)) <= PROB_TOLERANCE
        assert abs(sa.p_valid - sb.p_valid) <= PROB_TOLERANCE
        assert np.max(np.abs(sa.heatmap - sb.heatmap)) <= PROB_TOLERANCE
    for name in raw_a:
        assert raw_a[name].shape[0] == 5
        assert np.max(np.abs(raw_a[name] - raw_b[name])) <= LOGIT_TOLERANCE


@pytest.mark.slow  # one dynamo export (~6 s) shared by the module
def test_card_contents(exported):
    bundle_dir, _ = exported
    bundle = load_bundle(bundle_dir)
    card = bundle.card
    assert (bundle.name, bundle.version, bundle.input_size) == ("tiny", "1.2.3", 64)
    assert bundle.thresholds == THRESHOLDS
    assert card["sha256"] == {f: sha256_file(bundle_dir / f) for f in (ONNX_FILE, TORCH_FILE)}
    assert card["metrics"] == {"validation": {"auc_pivh": 0.5}}
    assert card["training_data"]["description"].startswith("Synthetic phantom only")
    assert card["training_data"]["dataset"]["generator"] == "pivh-live phantom"
    assert card["training_data"]["n_val_cases"] == 4
    assert set(card["software"]) == {"pivh_live", "torch", "onnx", "onnxruntime", "python"}
    assert card["input"]["shape"] == [-1, 1, 64, 64]
    assert card["outputs"][0]["labels"] == ["0", "I", "II", "III", "IV"]
    assert card["outputs"][2]["shape"] == [-1, 1, 8, 8]
    assert card["model_config"]["width"] == 4
    parity = card["export"]["parity_max_abs_diff"]
    assert parity["probabilities"] <= PROB_TOLERANCE
    assert sorted(p.name for p in bundle_dir.iterdir()) == [CARD_FILE, ONNX_FILE, TORCH_FILE]


@pytest.mark.slow  # one dynamo export (~6 s) shared by the module
def test_onnx_is_one_self_contained_file(exported):
    bundle_dir, _ = exported
    model = onnx.load(str(bundle_dir / ONNX_FILE), load_external_data=False)
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch
    weights = torch.load(bundle_dir / TORCH_FILE, weights_only=True)
    assert set(weights) == {"model_config", "state_dict"}


@pytest.mark.slow  # one dynamo export (~6 s) shared by the module
def test_parity_check_catches_a_different_model(exported):
    bundle_dir, _ = exported
    other = _random_model(1)
    with pytest.raises(ModelBundleError, match="disagrees with torch"):
        check_parity(other, bundle_dir / ONNX_FILE, 64)


def test_failed_export_leaves_no_half_bundle(tmp_path, monkeypatch):
    ckpt = _checkpoint(tmp_path / "best.pt", _random_model(0))

    def boom(*args, **kwargs):
        (args[1]).write_bytes(b"partial")
        raise RuntimeError("exporter crashed")

    monkeypatch.setattr(export_mod, "_export_onnx", boom)
    with pytest.raises(RuntimeError, match="exporter crashed"):
        export_bundle(ckpt, tmp_path / "models" / "x")
    assert list((tmp_path / "models").iterdir()) == []


def test_publish_replaces_a_bundle_but_not_other_directories(tmp_path):
    old = tmp_path / "b"
    old.mkdir()
    (old / CARD_FILE).write_text("{}")
    (old / "stale").write_text("x")
    new = tmp_path / ".b.tmp"
    new.mkdir()
    (new / CARD_FILE).write_text('{"new": true}')
    export_mod.publish_bundle(new, old)
    assert sorted(p.name for p in old.iterdir()) == [CARD_FILE]
    assert not new.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["b"]
    other = tmp_path / "notes"
    other.mkdir()
    (other / "readme.txt").write_text("mine")
    new.mkdir()
    with pytest.raises(ModelBundleError, match="not a model bundle"):
        export_mod.publish_bundle(new, other)
    assert (other / "readme.txt").read_text() == "mine"


def test_rejects_non_checkpoints(tmp_path):
    with pytest.raises(ModelBundleError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(ModelBundleError, match="not a readable pivh-live checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    with pytest.raises(ModelBundleError, match="not a pivh-live-checkpoint/1 checkpoint"):
        load_checkpoint(tmp_path / "tensor.pt")
    model = _random_model(0)
    bad_format = _checkpoint(tmp_path / "f.pt", model, format="other/1")
    with pytest.raises(ModelBundleError, match="format 'other/1'"):
        load_checkpoint(bad_format)
    no_thr = _checkpoint(tmp_path / "t.pt", model, thresholds={"pivh": 0.5})
    with pytest.raises(ModelBundleError, match=r"thresholds\.severe"):
        load_checkpoint(no_thr)
    other_pre = _checkpoint(
        tmp_path / "p.pt", model, preprocess={"input_size": 64, "letterbox": "stretch"}
    )
    with pytest.raises(ModelBundleError, match="trained with preprocessing"):
        load_checkpoint(other_pre)


def test_export_from_cli_passes_arguments(tmp_path, monkeypatch):
    seen = {}

    def fake(checkpoint, out, name=None, version="0.1.0"):
        seen.update(checkpoint=checkpoint, out=out, name=name, version=version)
        return Path(out)

    monkeypatch.setattr(export_mod, "export_bundle", fake)
    args = argparse.Namespace(checkpoint=Path("c.pt"), out=Path("models/m"), name="m", version="2")
    assert export_from_cli(args) == Path("models/m")
    assert seen == dict(checkpoint=Path("c.pt"), out=Path("models/m"), name="m", version="2")


@pytest.mark.slow  # shares the module's export
def test_torch_cpu_engine_takes_cuda_graph_option_and_ignores_it(exported):
    bundle_dir, _ = exported
    x = phantom_like_batch(2, 64, seed=5)
    with (
        create_engine("torch", bundle_dir, device="cpu", cuda_graph=True) as a,
        create_engine("torch", bundle_dir, device="cpu", cuda_graph=False) as b,
    ):
        assert a._graphs is None
        out_a, out_b = a.infer(x), b.infer(x)
    for name in out_a:
        np.testing.assert_array_equal(out_a[name], out_b[name])


@pytest.mark.gpu
@pytest.mark.slow
def test_torch_cuda_graphs_match_eager_and_return_fresh_arrays(exported):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU (torch sees none here); run on the lent GPU machine")
    bundle_dir, _ = exported
    x1, x2 = phantom_like_batch(3, 64, seed=1), phantom_like_batch(3, 64, seed=2)
    with (
        create_engine("torch", bundle_dir, device="cuda", cuda_graph=True) as graphs,
        create_engine("torch", bundle_dir, device="cuda", cuda_graph=False) as eager,
    ):
        first = graphs.infer(x1)
        kept = {k: v.copy() for k, v in first.items()}
        second = graphs.infer(x2)  # replays the same graph: must not overwrite `first`
        assert graphs._graphs is not None
        ref1, ref2 = eager.infer(x1), eager.infer(x2)
    for name in first:
        np.testing.assert_array_equal(first[name], kept[name])
        assert np.max(np.abs(first[name] - ref1[name])) <= LOGIT_TOLERANCE
        assert np.max(np.abs(second[name] - ref2[name])) <= LOGIT_TOLERANCE


class _Probe(torch.nn.Module):
    """PivhNet's output names and shapes, each a simple function of the input."""

    def forward(self, x):
        mean = x.mean(dim=(2, 3))
        grade = mean * torch.arange(1.0, 6.0)
        return grade, x.amax(dim=(2, 3)), torch.nn.functional.avg_pool2d(x, 8)


class _ReplayOnCpu:
    """Stands in for torch.cuda.CUDAGraph: replay recomputes into the static outputs."""

    def __init__(self, model, static_in, static_out) -> None:
        self.model, self.static_in, self.static_out = model, static_in, static_out

    def replay(self) -> None:
        from pivh_live.engines.torch_engine import outputs_as_dict

        with torch.no_grad():
            for name, value in outputs_as_dict(self.model(self.static_in)).items():
                self.static_out[name].copy_(value)


@pytest.mark.slow  # shares the module's export
def test_graph_replay_logic_copies_in_returns_fresh_arrays_and_falls_back(exported, monkeypatch):
    """CudaGraphs' bookkeeping on the CPU, with the capture itself replaced (no GPU here)."""
    from pivh_live.engines.torch_engine import CudaGraphs, outputs_as_dict

    bundle_dir, _ = exported

    # phantom_like_batch's last image is blank: keep the others.
    def images(n: int, seed: int) -> np.ndarray:
        return np.ascontiguousarray(phantom_like_batch(n + 1, 64, seed=seed)[:n])

    x1, x2, x3, x1b = images(1, 1), images(2, 2), images(3, 3), images(1, 9)

    def fake_capture(self, shape):
        static_in = torch.zeros(shape)
        with torch.no_grad():
            static_out = {k: v.clone() for k, v in outputs_as_dict(self._model(static_in)).items()}
        return _ReplayOnCpu(self._model, static_in, static_out), static_in, static_out

    with create_engine("torch", bundle_dir, device="cpu") as engine:
        engine._model = _Probe()  # input-dependent outputs (a random tiny net may give constants)
        ref = {i: engine.infer(x) for i, x in enumerate((x1, x2, x3, x1b))}
        assert np.abs(ref[0]["grade_logits"] - ref[3]["grade_logits"]).max() > 1e-3
        monkeypatch.setattr(CudaGraphs, "_capture", fake_capture)
        monkeypatch.setattr(CudaGraphs, "MAX_GRAPHS", 1)
        engine._graphs = CudaGraphs(engine._model, engine.device)
        first = engine.infer(x1)
        kept = {k: v.copy() for k, v in first.items()}
        same_shape = engine.infer(x1b)  # replays the batch-1 graph with new input
        other_shape = engine.infer(x2)  # second shape beyond MAX_GRAPHS: eager this call
        assert engine._graphs is not None and not engine._graphs.failed
        for name in first:
            np.testing.assert_array_equal(first[name], kept[name])
            np.testing.assert_allclose(first[name], ref[0][name], atol=1e-5)
            np.testing.assert_allclose(same_shape[name], ref[3][name], atol=1e-5)
            np.testing.assert_allclose(other_shape[name], ref[1][name], atol=1e-5)

        def failing_capture(self, shape):
            raise RuntimeError("operation not permitted when stream is capturing")

        monkeypatch.setattr(CudaGraphs, "_capture", failing_capture)
        engine._graphs = CudaGraphs(engine._model, engine.device)
        out = engine.infer(x3)
        assert engine._graphs is None  # eager from now on
        for name in out:
            np.testing.assert_allclose(out[name], ref[2][name], atol=1e-5)


@pytest.mark.slow  # one more dynamo export (~6 s)
def test_stretch_fit_travels_from_checkpoint_to_engines(tmp_path):
    from pivh_live.preprocess import preprocess

    torch.manual_seed(2)
    config = dataclasses.replace(TINY, fit="stretch")
    model = PivhNet(config).eval()
    with torch.no_grad():  # random weights everywhere, so the output depends on the input
        for p in model.parameters():
            p.normal_(0.0, 0.5)
    ckpt = _checkpoint(
        tmp_path / "best.pt",
        model,
        model_config=dataclasses.asdict(config),
        preprocess={"input_size": 64, "letterbox": "stretch-to-square", "scale": "1/255"},
    )
    bundle = load_bundle(export_bundle(ckpt, tmp_path / "stretchy"))
    assert bundle.fit == "stretch" and bundle.card["input"]["fit"] == "stretch"
    assert "scaled separately" in bundle.card["input"]["preprocessing"]
    yy, xx = np.mgrid[0:60, 0:150]
    region = (30 + xx + 100 * ((xx - 100) ** 2 + (yy - 25) ** 2 < 150)).astype(np.uint8)  # wide
    stretched, boxed = preprocess(region, 64, fit="stretch"), preprocess(region, 64)
    assert np.abs(stretched - boxed).max() > 0.3  # the two fits really differ
    with create_engine("onnxruntime", bundle) as engine:
        got = engine.score(region).heatmap
        # The engine preprocesses with the bundle's fit: its output is bit-identical
        # to inferring the stretched input, not the letterboxed one.
        from_stretched = _sigmoid(engine.infer(stretched[None])["heatmap_logits"][0, 0])
        from_boxed = _sigmoid(engine.infer(boxed[None])["heatmap_logits"][0, 0])
    np.testing.assert_array_equal(got, from_stretched)
    assert not np.array_equal(got, from_boxed)
    with torch.inference_mode():
        want = torch.sigmoid(model(torch.from_numpy(stretched[None]))[2]).numpy()[0, 0]
    assert np.max(np.abs(got - want)) <= PROB_TOLERANCE


def _sigmoid(x: np.ndarray) -> np.ndarray:
    from pivh_live.engines import scores_from_outputs

    grade = np.zeros((1, 5), np.float32)
    valid = np.zeros((1, 1), np.float32)
    outputs = {"grade_logits": grade, "valid_logit": valid, "heatmap_logits": x[None, None]}
    return scores_from_outputs(outputs)[0].heatmap


def test_checkpoint_with_mismatched_fit_is_refused(tmp_path):
    config = dataclasses.replace(TINY, fit="stretch")
    ckpt = _checkpoint(
        tmp_path / "best.pt", _random_model(0), model_config=dataclasses.asdict(config)
    )  # its preprocess still says letterbox
    with pytest.raises(ModelBundleError, match="trained with preprocessing"):
        load_checkpoint(ckpt)


@pytest.mark.slow  # one more dynamo export (~6 s) per option
@pytest.mark.parametrize("option", ["lesion_pool", "mirror_context"])
def test_grade_head_options_export_with_parity(tmp_path, option):
    config = dataclasses.replace(TINY, **{option: True})
    torch.manual_seed(4)
    model = PivhNet(config).eval()
    with torch.no_grad():  # random weights everywhere, so the output depends on the input
        for p in model.parameters():
            p.normal_(0.0, 0.5)
    ckpt = _checkpoint(tmp_path / "best.pt", model, model_config=dataclasses.asdict(config))
    bundle = load_bundle(export_bundle(ckpt, tmp_path / "pooled"))
    x = phantom_like_batch(3, 64, seed=5)
    with (
        create_engine("onnxruntime", bundle) as ort_engine,
        create_engine("torch", bundle, device="cpu") as torch_engine,
    ):
        a, b = ort_engine.infer(x), torch_engine.infer(x)
    assert a["grade_logits"].std() > 0.01  # the outputs are not trivially constant
    for name in a:
        assert np.max(np.abs(a[name] - b[name])) <= LOGIT_TOLERANCE


def _one_case_frames(images: np.ndarray) -> Any:
    """A FrameSet of ``images`` (N, S, S) uint8, all frames of one 25 fps case."""
    from pivh_live.training.data import CaseInfo, FrameSet

    n, size = len(images), images.shape[1]
    return FrameSet(
        images=images,
        grade=np.zeros(n, np.int8),
        valid=np.ones(n, np.int8),
        case_index=np.zeros(n, np.int32),
        frame_index=np.arange(n, dtype=np.int32),
        t_s=np.arange(n) / 25.0,
        cases=(CaseInfo("c0", 0, (0, 0, size, size), 25.0, n, True, False),),
    )


@pytest.mark.slow  # one more dynamo export (~6 s)
def test_hflip_travels_to_the_card_and_validation_matches_the_engines(tmp_path):
    from pivh_live.training.validation import predict

    config = dataclasses.replace(TINY, tta="hflip")
    torch.manual_seed(5)
    model = PivhNet(config)
    x = torch.from_numpy(phantom_like_batch(4, 64, seed=3))
    # A randomly initialised PivhNet's grade output hardly depends on the input; a
    # few steps towards a different grade per image make it (and its mirror) matter.
    optimiser = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(model(x)[0], torch.arange(4))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    ckpt = _checkpoint(tmp_path / "best.pt", model, model_config=dataclasses.asdict(config))
    bundle = load_bundle(export_bundle(ckpt, tmp_path / "mirrored"))
    assert bundle.tta == "hflip" and bundle.card["input"]["tta"] == "hflip"
    assert "mirror" in bundle.card["input"]["tta_description"]
    images = np.round(255 * x[:, 0].numpy()).astype(np.uint8)
    frames = _one_case_frames(images)
    plain = predict(model, frames, torch.device("cpu"))
    mirrored = predict(model, frames, torch.device("cpu"), tta="hflip")
    assert np.abs(plain["grade_probs"] - mirrored["grade_probs"]).max() > 0.01
    with create_engine("onnxruntime", bundle) as engine:
        scores = engine.score_preprocessed(images[:, None].astype(np.float32) / 255.0)
    got = np.stack([s.grade_probs for s in scores])
    np.testing.assert_allclose(got, mirrored["grade_probs"], atol=PROB_TOLERANCE)
    valid = np.array([s.p_valid for s in scores])
    np.testing.assert_allclose(valid, mirrored["p_valid"], atol=PROB_TOLERANCE)


@pytest.mark.slow  # one more dynamo export (~6 s)
def test_percentile_norm_travels_to_the_card_and_validation_matches_the_engines(tmp_path):
    from pivh_live.preprocess import normalize
    from pivh_live.training.validation import predict

    config = dataclasses.replace(TINY, norm="percentile")
    torch.manual_seed(6)
    model = PivhNet(config).eval()
    with torch.no_grad():  # random weights everywhere, so the output depends on the input
        for p in model.parameters():
            p.normal_(0.0, 0.5)
    pre = {"input_size": 64, "letterbox": "pad-square-centre-zero", "scale": "1/255"}
    with pytest.raises(ModelBundleError, match="records input norm 'none'"):
        load_checkpoint(
            _checkpoint(tmp_path / "odd.pt", model, model_config=dataclasses.asdict(config))
        )
    ckpt = _checkpoint(
        tmp_path / "best.pt",
        model,
        model_config=dataclasses.asdict(config),
        preprocess={**pre, "norm": "percentile"},
    )
    bundle = load_bundle(export_bundle(ckpt, tmp_path / "normed"))
    assert bundle.norm == "percentile" and bundle.card["input"]["norm"] == "percentile"
    assert bundle.card["schema"] == "pivh-live-bundle/2"  # an older pivh-live refuses it
    assert "99th" in bundle.card["input"]["preprocessing"]
    assert bundle.card["input"]["value_range"][1] > 1.0
    images = np.round(255 * phantom_like_batch(4, 64, seed=4)[:, 0]).astype(np.uint8)
    images[1] = images[0] // 2  # a half-bright copy: the norm gives (almost) its original's input
    normed = np.stack([normalize(image, "percentile") for image in images])
    assert np.abs(normed[1] - normed[0]).mean() < 0.01
    assert np.abs(images[1] / 255 - images[0] / 255).mean() > 0.1
    frames = _one_case_frames(images)
    want = predict(model, frames, torch.device("cpu"), norm="percentile")
    with create_engine("onnxruntime", bundle) as engine:
        scores = engine.score_batch(list(images))  # uint8 regions: the engine normalizes
        from_normed = engine.infer(normed[1:2, None])["heatmap_logits"]
        from_plain = engine.infer(images[1:2, None] * np.float32(1 / 255))["heatmap_logits"]
    np.testing.assert_array_equal(scores[1].heatmap, _sigmoid(from_normed[0, 0]))
    # The random network hardly depends on the input's scale, but exactly: the engine
    # scored the normalized picture, not the one divided by 255.
    assert not np.array_equal(from_plain, from_normed)
    got = np.stack([s.grade_probs for s in scores])
    np.testing.assert_allclose(got, want["grade_probs"], atol=PROB_TOLERANCE)
    valid = np.array([s.p_valid for s in scores])
    np.testing.assert_allclose(valid, want["p_valid"], atol=PROB_TOLERANCE)
