"""`pivh-live build-engine`: the no-TensorRT error, trtexec printing, staging and the parity check.

Everything here runs without TensorRT; the real build is at the bottom, marked
`tensorrt` and `gpu`, and skipped on machines without them.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pivh_live.bundle import CARD_FILE, ONNX_FILE, load_bundle, make_card, sha256_file
from pivh_live.bundle import write_json_atomic as write_json
from pivh_live.commands import build_engine as cmd
from pivh_live.engines import create_engine
from pivh_live.engines import tensorrt_build as tb
from pivh_live.engines.base import Engine
from pivh_live.engines.tensorrt import EngineStamp, read_stamp, stamp_path
from pivh_live.errors import ConfigError, EngineError

onnx = pytest.importorskip("onnx", reason="onnx is in the train extra")
from onnx import TensorProto, helper  # noqa: E402

SIZE, HEATMAP = 64, 8


def write_bundle(root: Path) -> Path:
    f, k = TensorProto.FLOAT, SIZE // HEATMAP
    wg = helper.make_tensor("wg", f, [1, 5], [0.5, -1.0, 2.0, 0.0, 3.0])
    pool = helper.make_node(
        "AveragePool", ["image"], ["heatmap_logits"], kernel_shape=[k, k], strides=[k, k]
    )
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["image"], ["gap"]),
            helper.make_node("Flatten", ["gap"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "wg"], ["grade_logits"]),
            helper.make_node("Identity", ["flat"], ["valid_logit"]),
            pool,
        ],
        "tiny",
        [helper.make_tensor_value_info("image", f, ["N", 1, SIZE, SIZE])],
        [
            helper.make_tensor_value_info("grade_logits", f, ["N", 5]),
            helper.make_tensor_value_info("valid_logit", f, ["N", 1]),
            helper.make_tensor_value_info("heatmap_logits", f, ["N", 1, HEATMAP, HEATMAP]),
        ],
        initializer=[wg],
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


@pytest.fixture
def bundle_dir(tmp_path: Path) -> Path:
    return write_bundle(tmp_path / "tiny")


@pytest.fixture
def no_tensorrt(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `import tensorrt` fail as on a machine without it, wherever the tests run."""
    monkeypatch.setitem(sys.modules, "tensorrt", None)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cmd.configure(parser)
    return parser.parse_args(list(argv))


def frames(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (90 + 7 * i, 120), dtype=np.uint8) for i in range(n)]


# --- without TensorRT -----------------------------------------------------------------


def test_build_without_tensorrt_is_one_line_pointing_to_the_docs(no_tensorrt, tmp_path):
    # The bundle does not even exist: the TensorRT check comes first.
    with pytest.raises(EngineError) as err:
        cmd.main(parse(str(tmp_path / "missing")))
    assert str(err.value) == tb.TRT_NOT_INSTALLED
    assert str(err.value) == (
        "TensorRT is not installed; on a Jetson it comes with JetPack (python3-libnvinfer); "
        "see docs/jetson.md"
    )


def test_broken_tensorrt_install_says_so(tmp_path, monkeypatch):
    fake = tmp_path / "site" / "tensorrt"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise RuntimeError('numpy.core.multiarray failed')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    with pytest.raises(
        EngineError, match=r"installed but cannot be imported \(RuntimeError: numpy"
    ):
        tb.import_tensorrt()


def test_print_trtexec_works_without_tensorrt(no_tensorrt, bundle_dir, capsys):
    assert cmd.main(parse(str(bundle_dir), "--print-trtexec")) == 0
    args = shlex.split(capsys.readouterr().out)
    assert args == [
        "trtexec",
        f"--onnx={bundle_dir / 'model.onnx'}",
        f"--saveEngine={bundle_dir / 'model.engine'}",
        "--minShapes=image:1x1x64x64",
        "--optShapes=image:1x1x64x64",
        "--maxShapes=image:8x1x64x64",
        "--memPoolSize=workspace:1024M",
        "--fp16",
    ]


def test_print_trtexec_options(no_tensorrt, bundle_dir, tmp_path, capsys):
    out = tmp_path / "e" / "tiny.plan"
    argv = [str(bundle_dir), "--print-trtexec", "--no-fp16", "--int8", "--out", str(out)]
    argv += [
        "--timing-cache",
        str(tmp_path / "t.cache"),
        "--max-batch",
        "4",
        "--workspace-mb",
        "64",
    ]
    assert cmd.main(parse(*argv)) == 0
    args = shlex.split(capsys.readouterr().out)
    assert "--fp16" not in args
    assert f"--saveEngine={out}" in args and "--maxShapes=image:4x1x64x64" in args
    assert {"--int8", f"--calib={tmp_path / 'e' / 'tiny.calib'}"} <= set(args)
    assert f"--timingCacheFile={tmp_path / 't.cache'}" in args
    assert "--memPoolSize=workspace:64M" in args
    assert parse(str(bundle_dir), "--fp32").fp16 is False  # the older spelling still works


def test_module_entry_point_prints_the_same_line(bundle_dir):
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pivh_live.engines.tensorrt_build",
            str(bundle_dir),
            "--print-trtexec",
            "--max-batch",
            "2",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--maxShapes=image:2x1x64x64" in run.stdout and run.stdout.startswith("trtexec ")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--max-batch", "0"], "--max-batch must be >= 1"),
        (["--workspace-mb", "0"], "--workspace-mb must be >= 1"),
        (["--int8", "--calibration-frames", "4"], "--calibration-frames must be >= 8"),
        (["--parity-frames", "-1"], "--parity-frames must be >= 0"),
        (["--parity-tolerance", "0"], "--parity-tolerance must be > 0"),
    ],
)
def test_bad_arguments_fail_before_anything_else(no_tensorrt, argv, message):
    with pytest.raises(ConfigError, match=message):
        cmd.main(parse("models/x", *argv))


# --- staging, parity and the stamp (TensorRT replaced by fakes) -------------------------


class FakeBuild:
    """Stands in for tb.build_engine: writes an 'engine' and its stamp like the real one."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def __call__(self, bundle, out, **kwargs):
        self.calls.append({"out": Path(out), **kwargs})
        Path(out).write_bytes(b"new engine")
        stamp = EngineStamp("10.3.0", "Orin", "8.7", bundle.onnx_sha256, precision="fp16")
        stamp_path(out).write_text(json.dumps(stamp.to_dict()))
        return Path(out)


def parity(ok: bool) -> tb.ParityResult:
    worst = 1e-3 if ok else 0.2
    return tb.ParityResult(16, (1, 8), worst, 1e-4, 1e-4, 5e-3, tolerance=2e-2)


@pytest.fixture
def fake_trt(monkeypatch):
    build = FakeBuild()
    monkeypatch.setattr(tb, "import_tensorrt", lambda: object())
    monkeypatch.setattr(tb, "build_engine", build)
    monkeypatch.setattr(tb, "phantom_frames", lambda n, seed=0: frames(n, seed))
    return build


def test_engine_is_installed_after_parity_passes(fake_trt, bundle_dir, monkeypatch, capsys):
    seen = {}

    def check(bundle, engine, frames_, tolerance):
        seen.update(engine=engine, n=len(frames_), tolerance=tolerance, exists=engine.is_file())
        return parity(ok=True)

    monkeypatch.setattr(tb, "parity_check", check)
    assert cmd.main(parse(str(bundle_dir), "--parity-frames", "12")) == 0
    engine = bundle_dir / "model.engine"
    assert engine.read_bytes() == b"new engine"
    assert seen == {"engine": bundle_dir / ".model.engine.new", "n": 12, "tolerance": 2e-2,
                    "exists": True}  # fmt: skip
    stamp = json.loads(stamp_path(engine).read_text())
    assert stamp["parity"]["ok"] is True and stamp["parity"]["grade_probs"] == 1e-3
    assert read_stamp(engine).precision == "fp16"
    assert sorted(p.name for p in bundle_dir.iterdir()) == [
        "model.engine", "model.engine.json", "model.json", "model.onnx"
    ]  # fmt: skip
    assert "parity vs onnxruntime: max abs diff 1.00e-03" in capsys.readouterr().out
    assert fake_trt.calls[0]["calibration_frames"] is None  # no INT8: nothing rendered


def test_failed_parity_keeps_the_old_engine(fake_trt, bundle_dir, monkeypatch):
    (bundle_dir / "model.engine").write_bytes(b"old engine")
    stamp_path(bundle_dir / "model.engine").write_text("{}")
    monkeypatch.setattr(tb, "parity_check", lambda *a: parity(ok=False))
    with pytest.raises(EngineError, match=r"differs from ONNX Runtime: .*FAILED; the old engine"):
        cmd.main(parse(str(bundle_dir)))
    assert (bundle_dir / "model.engine").read_bytes() == b"old engine"
    assert not (bundle_dir / ".model.engine.new").exists()
    assert not stamp_path(bundle_dir / ".model.engine.new").exists()


def test_int8_calibrates_on_phantom_frames_unless_a_cache_exists(fake_trt, bundle_dir):
    cmd.main(parse(str(bundle_dir), "--int8", "--calibration-frames", "16", "--parity-frames", "0"))
    call = fake_trt.calls[-1]
    assert call["int8"] and len(call["calibration_frames"]) == 16
    assert call["calibration_cache"] == bundle_dir / "model.calib"
    (bundle_dir / "model.calib").write_bytes(b"cache")
    cmd.main(parse(str(bundle_dir), "--int8", "--parity-frames", "0"))
    assert fake_trt.calls[-1]["calibration_frames"] is None


# --- the parity comparison itself (ONNX Runtime on both sides, or a skewed copy) ----------


class Skewed(Engine):
    """Wraps an engine and changes its outputs, to show the comparison catches it."""

    def __init__(self, inner: Engine, shift: float, max_batch: int | None = None) -> None:
        super().__init__(inner.bundle)
        self.inner, self.shift, self.max_batch = inner, shift, max_batch
        self.batches: list[int] = []

    def infer(self, batch):
        self.batches.append(batch.shape[0])
        out = dict(self.inner.infer(batch))
        out["grade_logits"] = out["grade_logits"] + np.array([self.shift, 0, 0, 0, 0], np.float32)
        return out


def test_identical_engines_have_zero_difference(bundle_dir):
    with create_engine("onnxruntime", bundle_dir, device="cpu") as ref:
        result = tb.compare_engines(ref, Skewed(ref, 0.0, max_batch=4), frames(6), 2e-2)
    assert result.ok and result.probabilities == 0.0 and result.logits == 0.0
    assert result.batch_sizes == (1, 4)


def test_a_shifted_logit_is_caught_and_reported(bundle_dir):
    with create_engine("onnxruntime", bundle_dir, device="cpu") as ref:
        skewed = Skewed(ref, 0.5, max_batch=8)
        result = tb.compare_engines(ref, skewed, frames(3), 2e-2)
        small = tb.compare_engines(ref, Skewed(ref, 1e-3), frames(3), 2e-2)
    assert skewed.batches == [1, 1, 1, 3]
    assert result.logits == pytest.approx(0.5, abs=1e-6)
    assert not result.ok and result.grade_probs > 0.05 and result.p_valid == 0.0
    assert "FAILED" in result.summary() and "batch 1 and 3" in result.summary()
    assert small.ok and 0 < small.grade_probs < 1e-3


def test_nan_output_fails(bundle_dir):
    with create_engine("onnxruntime", bundle_dir, device="cpu") as ref:
        result = tb.compare_engines(ref, Skewed(ref, float("nan")), frames(2), 1.0)
    assert not result.ok and result.grade_probs == float("inf")


def test_tolerances_and_parity_record(tmp_path):
    assert tb.PARITY_TOLERANCE == {"fp32": 1e-3, "fp16": 2e-2, "int8": 0.1, "int8+fp16": 0.1}
    engine = tmp_path / "model.engine"
    stamp = EngineStamp("10.3.0", "Orin", "8.7", "a" * 64)
    stamp_path(engine).write_text(json.dumps(stamp.to_dict()))
    tb.record_parity(engine, parity(ok=True))
    data = json.loads(stamp_path(engine).read_text())
    assert data["parity"]["reference"] == "onnxruntime cpu float32"
    assert data["parity"]["batch_sizes"] == [1, 8]
    assert read_stamp(engine) == stamp  # extra keys do not disturb the loader


def test_phantom_frames_argument_check():
    with pytest.raises(ValueError, match="n >= 1"):
        tb.phantom_frames(0)


@pytest.mark.slow
def test_phantom_frames_are_seeded_gray_regions():
    a = tb.phantom_frames(3, seed=5, frames_per_clip=2)
    b = tb.phantom_frames(3, seed=5, frames_per_clip=2)
    assert len(a) == 3 and all(f.dtype == np.uint8 and f.ndim == 2 for f in a)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert a[0].shape != a[2].shape or not np.array_equal(a[0], a[2])  # two different clips


# --- with TensorRT and a GPU ---------------------------------------------------------


def _need_tensorrt_gpu() -> None:
    pytest.importorskip("tensorrt", reason="TensorRT Python package not installed")
    torch = pytest.importorskip("torch", reason="torch with CUDA is needed for TensorRT")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_build_engine_command_builds_checks_and_stamps(bundle_dir, tmp_path, capsys):
    _need_tensorrt_gpu()
    cache = tmp_path / "timing.cache"
    argv = [str(bundle_dir), "--timing-cache", str(cache), "--parity-frames", "8"]
    assert cmd.main(parse(*argv)) == 0
    stamp = json.loads(stamp_path(bundle_dir / "model.engine").read_text())
    assert stamp["precision"] == "fp16" and stamp["parity"]["ok"] is True
    assert stamp["parity"]["grade_probs"] <= 2e-2 and cache.stat().st_size > 0
    assert "parity vs onnxruntime" in capsys.readouterr().out


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_int8_build_writes_a_calibration_cache(bundle_dir):
    _need_tensorrt_gpu()
    argv = [str(bundle_dir), "--int8", "--calibration-frames", "16", "--parity-frames", "8"]
    assert cmd.main(parse(*argv)) == 0
    assert (bundle_dir / "model.calib").stat().st_size > 0
    assert read_stamp(bundle_dir / "model.engine").precision == "int8+fp16"


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_engine_from_another_tensorrt_is_refused(bundle_dir):
    _need_tensorrt_gpu()
    tb.build_engine(load_bundle(bundle_dir), fp16=False)
    engine = bundle_dir / "model.engine"
    data = json.loads(stamp_path(engine).read_text())
    stamp_path(engine).write_text(json.dumps({**data, "tensorrt": "8.6.1"}))
    with pytest.raises(EngineError, match=r"TensorRT version 8\.6\.1 \(engine\) != .*rebuild"):
        create_engine("tensorrt", bundle_dir)


# --- the runtime glue on a real GPU, with a stand-in for the tensorrt module ------------


class _DevicePtr:
    """Exposes raw device memory to torch (zero copy) via __cuda_array_interface__."""

    def __init__(self, ptr: int, shape: tuple[int, ...]) -> None:
        self.__cuda_array_interface__ = {
            "shape": shape, "typestr": "<f4", "data": (ptr, False), "version": 3, "strides": None
        }  # fmt: skip


def _fake_tensorrt(torch):
    """Just enough of the TensorRT 10 runtime API to run the tiny bundle's maths in torch."""
    import importlib.machinery
    import types

    import torch.nn.functional as F

    shapes = {
        "image": (-1, 1, SIZE, SIZE),
        "grade_logits": (-1, 5),
        "valid_logit": (-1, 1),
        "heatmap_logits": (-1, 1, HEATMAP, HEATMAP),
    }
    trt = types.ModuleType("tensorrt")
    trt.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)  # find_spec needs one
    trt.__version__ = "10.99-standin"
    trt.nptype = lambda dtype: np.float32
    trt.TensorIOMode = types.SimpleNamespace(INPUT="in", OUTPUT="out")
    trt.contexts = []

    class Logger:
        WARNING = 2

        def __init__(self, level):
            pass

    class Context:
        def __init__(self):
            self.addr, self.n, self.calls = {}, 0, 0
            self.wg = torch.tensor([[0.5, -1.0, 2.0, 0.0, 3.0]], device="cuda")
            trt.contexts.append(self)

        def set_tensor_address(self, name, ptr):
            self.addr[name] = ptr
            return True

        def set_input_shape(self, name, shape):
            self.n = shape[0]
            return 1 <= self.n <= 8

        def execute_async_v3(self, handle):
            self.calls += 1
            n = self.n

            def view(name):
                return torch.as_tensor(
                    _DevicePtr(self.addr[name], (n, *shapes[name][1:])), device="cuda"
                )

            with torch.cuda.stream(torch.cuda.ExternalStream(handle)):
                image = view("image")
                gap = image.mean(dim=(1, 2, 3)).unsqueeze(1)
                view("grade_logits").copy_(gap * self.wg)
                view("valid_logit").copy_(gap)
                view("heatmap_logits").copy_(F.avg_pool2d(image, SIZE // HEATMAP))
            return True

    class CudaEngine:
        num_io_tensors = len(shapes)

        def get_tensor_name(self, i):
            return list(shapes)[i]

        def get_tensor_mode(self, name):
            return "in" if name == "image" else "out"

        def get_tensor_shape(self, name):
            return shapes[name]

        def get_tensor_dtype(self, name):
            return "float32"

        def get_tensor_profile_shape(self, name, profile):
            return [(1, 1, SIZE, SIZE), (1, 1, SIZE, SIZE), (8, 1, SIZE, SIZE)]

        def create_execution_context(self):
            return Context()

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            return CudaEngine() if data == b"standin" else None

    trt.Logger, trt.Runtime = Logger, Runtime
    return trt


@pytest.mark.gpu
def test_runtime_glue_on_the_gpu_with_a_stand_in_tensorrt(bundle_dir, monkeypatch):
    """Buffers, stream, pinned copies, stamp check and per-batch CUDA graphs, without TensorRT."""
    torch = pytest.importorskip("torch", reason="torch with CUDA is needed")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    from pivh_live.engines.tensorrt import current_system

    trt = _fake_tensorrt(torch)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    bundle = load_bundle(bundle_dir)
    engine_path = bundle_dir / "model.engine"
    engine_path.write_bytes(b"standin")
    here = current_system(bundle.onnx_sha256)
    stamp_path(engine_path).write_text(json.dumps({**here.to_dict(), "max_batch": 8}))

    with (
        create_engine("onnxruntime", bundle, device="cpu") as ref,
        create_engine("tensorrt", bundle, cuda_graph=True) as gpu,
    ):
        for n, seed in [(1, 1), (1, 2), (3, 3), (1, 4), (3, 5), (8, 6)]:
            batch = tb.preprocess_batch(frames(n, seed), SIZE)
            want, got = ref.infer(batch), gpu.infer(batch)
            for name in want:
                np.testing.assert_allclose(got[name], want[name], atol=1e-5, err_msg=name)
        assert sorted(gpu._graphs) == [1, 3, 8]
        result = tb.compare_engines(ref, gpu, frames(10), 1e-3)  # batches 1 and 8, 8 + 2
        assert sorted(gpu._graphs) == [1, 2, 3, 8]
    # One context per batch size; each ran twice (plain run + capture), replays ran no Python.
    assert [c.calls for c in trt.contexts] == [2, 2, 2, 2]
    assert result.ok and result.probabilities < 1e-5

    stamp_path(engine_path).write_text(json.dumps({**here.to_dict(), "gpu": "Other GPU"}))
    with pytest.raises(EngineError, match=r"GPU Other GPU \(engine\) != .* \(here\)"):
        create_engine("tensorrt", bundle)


def test_cli_prints_the_missing_tensorrt_error_as_one_line(no_tensorrt, bundle_dir, monkeypatch,
                                                          capsys):  # fmt: skip
    from pivh_live import cli

    monkeypatch.setitem(
        cli.COMMANDS, "build-engine", ("pivh_live.commands.build_engine", "build a TensorRT engine")
    )
    assert cli.main(["build-engine", str(bundle_dir)]) == 1
    err = capsys.readouterr().err
    assert err == f"pivh-live build-engine: error: {tb.TRT_NOT_INSTALLED}\n"


def test_a_mirror_tta_bundle_is_optimised_for_batch_two(no_tensorrt, bundle_dir, capsys):
    card = json.loads((bundle_dir / "model.json").read_text())
    card["input"]["tta"] = "hflip"
    (bundle_dir / "model.json").write_text(json.dumps(card))
    assert cmd.main(parse(str(bundle_dir), "--print-trtexec")) == 0
    args = shlex.split(capsys.readouterr().out)
    assert "--optShapes=image:2x1x64x64" in args and "--maxShapes=image:8x1x64x64" in args
    assert cmd.main(parse(str(bundle_dir), "--print-trtexec", "--max-batch", "1")) == 0
    assert "--optShapes=image:1x1x64x64" in shlex.split(capsys.readouterr().out)


def test_build_passes_the_tta_batch_to_tensorrt(fake_trt, bundle_dir, monkeypatch):
    monkeypatch.setattr(tb, "parity_check", lambda *a, **k: parity(ok=True))
    assert cmd.main(parse(str(bundle_dir))) == 0
    assert fake_trt.calls[-1]["opt_batch"] == 1
    card = json.loads((bundle_dir / "model.json").read_text())
    card["input"]["tta"] = "hflip"
    (bundle_dir / "model.json").write_text(json.dumps(card))
    assert cmd.main(parse(str(bundle_dir))) == 0
    assert fake_trt.calls[-1]["opt_batch"] == 2
