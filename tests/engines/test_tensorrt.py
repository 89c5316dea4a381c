"""TensorRT engine: the pure parts run everywhere; the engine itself needs TensorRT and a GPU."""

import dataclasses
import json
import shlex

import numpy as np
import pytest

from pivh_live.engines.tensorrt import (
    STAMP_SCHEMA,
    EngineStamp,
    check_stamp,
    read_stamp,
    stamp_mismatches,
    stamp_path,
)
from pivh_live.engines.tensorrt_build import precision_name, trtexec_command
from pivh_live.errors import EngineError

BUILT = EngineStamp(
    tensorrt="10.3.0",
    gpu="Orin",
    compute_capability="8.7",
    bundle_sha256="a" * 64,
    precision="fp16",
    max_batch=8,
    created="2025-01-01T00:00:00+00:00",
)
HERE = EngineStamp(tensorrt="10.3.0", gpu="Orin", compute_capability="8.7", bundle_sha256="a" * 64)


def test_matching_stamp_has_no_mismatches():
    assert stamp_mismatches(BUILT, HERE) == []
    check_stamp(BUILT, HERE, stamp_path("m/model.engine"))


@pytest.mark.parametrize(
    ("change", "label"),
    [
        ({"tensorrt": "10.7.0"}, "TensorRT version 10.3.0 (engine) != 10.7.0 (here)"),
        ({"gpu": "NVIDIA H100"}, "GPU Orin (engine) != NVIDIA H100 (here)"),
        ({"compute_capability": "9.0"}, "compute capability 8.7 (engine) != 9.0 (here)"),
        ({"bundle_sha256": "b" * 64}, "model.onnx sha256 aaaaaaaaaaaa (engine) != bbbbbbbbbbbb"),
    ],
)
def test_each_mismatch_is_named(change, label):
    here = dataclasses.replace(HERE, **change)
    problems = stamp_mismatches(BUILT, here)
    assert len(problems) == 1 and problems[0].startswith(label)
    with pytest.raises(EngineError, match=r"built for another setup.*rebuild it on this machine"):
        check_stamp(BUILT, here, stamp_path("m/model.engine"))


def test_precision_and_batch_do_not_count_as_mismatch():
    assert stamp_mismatches(BUILT, dataclasses.replace(HERE, precision="fp32", max_batch=1)) == []


def test_stamp_file_round_trip_and_errors(tmp_path):
    engine = tmp_path / "model.engine"
    assert stamp_path(engine) == tmp_path / "model.engine.json"
    with pytest.raises(EngineError, match="is missing"):
        read_stamp(engine)
    stamp_path(engine).write_text("{broken")
    with pytest.raises(EngineError, match="not valid JSON"):
        read_stamp(engine)
    stamp_path(engine).write_text(json.dumps({"schema": "other", **dataclasses.asdict(BUILT)}))
    with pytest.raises(EngineError, match=STAMP_SCHEMA):
        read_stamp(engine)
    stamp_path(engine).write_text(json.dumps({"schema": STAMP_SCHEMA, "gpu": "Orin"}))
    with pytest.raises(EngineError, match="lacks fields"):
        read_stamp(engine)
    stamp_path(engine).write_text(json.dumps({**BUILT.to_dict(), "future_field": 1}))
    assert read_stamp(engine) == BUILT


def test_trtexec_command_defaults():
    line = trtexec_command("models/a/model.onnx", "models/a/model.engine")
    assert line == (
        "trtexec --onnx=models/a/model.onnx --saveEngine=models/a/model.engine "
        "--minShapes=image:1x1x256x256 --optShapes=image:1x1x256x256 "
        "--maxShapes=image:8x1x256x256 --memPoolSize=workspace:1024M --fp16"
    )


def test_trtexec_command_int8_cache_and_quoting():
    line = trtexec_command(
        "my models/model.onnx",
        "out/model.engine",
        fp16=False,
        int8=True,
        calibration_cache="out/model.calib",
        workspace_mb=512,
        timing_cache="out/timing.cache",
        input_size=128,
        opt_batch=2,
        max_batch=4,
    )
    args = shlex.split(line)
    assert args[1] == "--onnx=my models/model.onnx"
    assert "--fp16" not in args
    assert {"--int8", "--calib=out/model.calib", "--timingCacheFile=out/timing.cache"} <= set(args)
    assert "--optShapes=image:2x1x128x128" in args and "--maxShapes=image:4x1x128x128" in args
    assert "--memPoolSize=workspace:512M" in args


def test_precision_names():
    assert [precision_name(f, i) for f, i in [(False, False), (True, False), (False, True)]] == [
        "fp32",
        "fp16",
        "int8",
    ]
    assert precision_name(True, True) == "int8+fp16"


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_tensorrt_engine_matches_onnxruntime(tmp_path):
    pytest.importorskip("tensorrt", reason="TensorRT Python package not installed")
    torch = pytest.importorskip("torch", reason="torch with CUDA is needed for TensorRT")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    from pivh_live.engines import create_engine
    from pivh_live.engines.tensorrt_build import build_engine
    from pivh_live.training.export import export_bundle
    from pivh_live.training.network import ModelConfig, PivhNet

    cfg = ModelConfig(width=8)
    model = PivhNet(cfg)
    ckpt = tmp_path / "ckpt.pt"
    torch.save(
        {
            "format": "pivh-live-checkpoint/1",
            "model_config": dataclasses.asdict(cfg),
            "state_dict": model.state_dict(),
            "thresholds": {"pivh": 0.5, "severe": 0.5, "valid": 0.5},
        },
        ckpt,
    )
    bundle = export_bundle(ckpt, tmp_path / "bundle")
    engine_path = build_engine(bundle, fp16=False)
    rng = np.random.default_rng(0)
    regions = [rng.integers(0, 256, (300, 400), dtype=np.uint8) for _ in range(3)]
    with (
        create_engine("onnxruntime", bundle) as ref,
        create_engine("tensorrt", bundle, engine_path=engine_path, cuda_graph=True) as trt_engine,
    ):
        for a, b in zip(ref.score_batch(regions), trt_engine.score_batch(regions), strict=True):
            np.testing.assert_allclose(a.grade_probs, b.grade_probs, atol=1e-3)
            assert abs(a.p_valid - b.p_valid) < 1e-3
