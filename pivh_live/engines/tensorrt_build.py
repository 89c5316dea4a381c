"""Build a TensorRT 10 engine from a bundle's model.onnx (and say the equivalent trtexec line).

The engine has one optimisation profile over the batch (min 1, opt 1, max 8
by default: the live loop runs batch 1, offline review batches up to 8).
FP16 uses the TensorRT 10 builder flag; INT8 uses entropy calibration over
given frames (by default seeded phantom frames) with a calibration cache.
TensorRT 11 removed both flags (it builds strongly typed networks only), so
there FP16/INT8 need a converted ONNX (NVIDIA ModelOpt) and this builder
asks for fp16=False.

After a build, `compare_engines` checks the engine against ONNX Runtime on
phantom frames (`PARITY_TOLERANCE` per precision). The command is
``pivh-live build-engine`` (``python -m pivh_live.engines.tensorrt_build``
runs the same), on the machine that will run the engine: engines are
specific to the TensorRT version and the GPU.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shlex
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pivh_live.bundle import INPUT_NAME, ModelBundle, load_bundle
from pivh_live.engines.base import Engine, sigmoid, softmax
from pivh_live.engines.tensorrt import (
    EngineStamp,
    current_system,
    default_engine_path,
    stamp_path,
)
from pivh_live.errors import EngineError
from pivh_live.preprocess import preprocess_batch

log = logging.getLogger(__name__)

CALIBRATION_BATCH = 8
TRT_NOT_INSTALLED = (
    "TensorRT is not installed; on a Jetson it comes with JetPack (python3-libnvinfer); "
    "see docs/jetson.md"
)
# Max abs difference allowed between the engine and ONNX Runtime (CPU, float32)
# on probabilities. FP16 keeps ~3 significant digits through ~20 layers; INT8
# entropy calibration on phantom frames shifts probabilities much more.
PARITY_TOLERANCE: dict[str, float] = {"fp32": 1e-3, "fp16": 2e-2, "int8": 0.1, "int8+fp16": 0.1}


def import_tensorrt() -> Any:
    """The tensorrt module, or EngineError with the one-line install hint."""
    try:
        import tensorrt
    except ImportError:
        raise EngineError(TRT_NOT_INSTALLED) from None
    except Exception as e:  # a broken install (library or numpy ABI mismatch) raises others
        raise EngineError(
            f"TensorRT is installed but cannot be imported ({type(e).__name__}: "
            f"{str(e).strip()[:150]}); see docs/jetson.md"
        ) from e
    return tensorrt


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def precision_name(fp16: bool, int8: bool) -> str:
    if int8:
        return "int8+fp16" if fp16 else "int8"
    return "fp16" if fp16 else "fp32"


def trtexec_command(
    onnx_path: str | Path,
    engine_path: str | Path,
    *,
    fp16: bool = True,
    int8: bool = False,
    calibration_cache: str | Path | None = None,
    workspace_mb: int = 1024,
    timing_cache: str | Path | None = None,
    input_size: int = 256,
    opt_batch: int = 1,
    max_batch: int = 8,
) -> str:
    """The trtexec (TensorRT 10) command line that builds the same engine as build_engine."""

    def shape(n: int) -> str:
        return f"{INPUT_NAME}:{n}x1x{input_size}x{input_size}"

    args = [
        "trtexec",
        f"--onnx={onnx_path}",
        f"--saveEngine={engine_path}",
        f"--minShapes={shape(1)}",
        f"--optShapes={shape(opt_batch)}",
        f"--maxShapes={shape(max_batch)}",
        f"--memPoolSize=workspace:{workspace_mb}M",
    ]
    if fp16:
        args.append("--fp16")
    if int8:
        args.append("--int8")
        if calibration_cache is not None:
            args.append(f"--calib={calibration_cache}")
    if timing_cache is not None:
        args.append(f"--timingCacheFile={timing_cache}")
    return shlex.join(args)


def phantom_frames(n: int, seed: int = 0, frames_per_clip: int = 8) -> list[np.ndarray]:
    """``n`` gray uint8 image regions from seeded phantom clips cycling through grades 0-IV.

    Used for INT8 calibration and the parity check; several short clips
    rather than one long one, so that every grade and several probe
    positions and styles are present.
    """
    from pivh_live.phantom import render_clip, sample_case

    if n < 1 or frames_per_clip < 1:
        raise ValueError(f"need n >= 1 and frames_per_clip >= 1, got {n}, {frames_per_clip}")
    rng = np.random.default_rng(seed)
    frames: list[np.ndarray] = []
    clip = 0
    while len(frames) < n:
        k = min(frames_per_clip, n - len(frames))
        spec = sample_case(rng, "balanced", case_id=f"cal{clip:03d}", n_frames=k, grade=clip % 5)
        frames.extend(render_clip(spec).frames)
        clip += 1
    return frames


def _make_calibrator(
    trt: Any,
    torch: Any,
    frames: Sequence[np.ndarray] | None,
    size: int,
    cache: Path,
    fit: str = "letterbox",
    norm: str = "none",
) -> Any:
    """IInt8EntropyCalibrator2 over ``frames`` (gray uint8 regions) with a cache file."""

    class Calibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc]
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._frames = list(frames or [])
            self._next = 0
            self._device = torch.empty(
                (CALIBRATION_BATCH, 1, size, size), dtype=torch.float32, device="cuda"
            )

        def get_batch_size(self) -> int:
            return CALIBRATION_BATCH

        def get_batch(self, names: list[str]) -> list[int] | None:
            # Whole batches only: the calibration profile has a fixed batch size.
            if self._next + CALIBRATION_BATCH > len(self._frames):
                return None
            chunk = self._frames[self._next : self._next + CALIBRATION_BATCH]
            self._next += CALIBRATION_BATCH
            self._device.copy_(torch.from_numpy(preprocess_batch(chunk, size, fit, norm)))
            torch.cuda.synchronize()
            return [int(self._device.data_ptr())]

        def read_calibration_cache(self) -> bytes | None:
            return cache.read_bytes() if cache.is_file() else None

        def write_calibration_cache(self, data: Any) -> None:
            _write_atomic(cache, bytes(data))

    return Calibrator()


def _parse_onnx(trt: Any, builder: Any, logger: Any, onnx_path: Path) -> tuple[Any, Any]:
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EngineError(
            f"TensorRT cannot parse {onnx_path}: {'; '.join(errors)[:300]}; "
            "check the TensorRT version against docs/model_bundle.md"
        )
    return network, parser


def _check_precision_flags(trt: Any, fp16: bool, int8: bool) -> None:
    for wanted, flag in ((fp16, "FP16"), (int8, "INT8")):
        if wanted and not hasattr(trt.BuilderFlag, flag):
            raise EngineError(
                f"TensorRT {trt.__version__} has no BuilderFlag.{flag} (removed in TensorRT 11); "
                "build with --no-fp16 and without --int8, or convert model.onnx with NVIDIA "
                "ModelOpt first"
            )


def _attach_timing_cache(config: Any, path: Path) -> Any:
    """Load ``path`` into the builder config; a cache from another TensorRT/GPU starts fresh."""
    data = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(data)
    if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
        return cache
    log.warning("timing cache %s does not fit this TensorRT/GPU; starting a new one", path)
    cache = config.create_timing_cache(b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    return cache


def build_engine(
    bundle: ModelBundle | str | Path,
    out_path: str | Path | None = None,
    fp16: bool = True,
    int8: bool = False,
    calibration_frames: Sequence[np.ndarray] | None = None,
    workspace_mb: int = 1024,
    timing_cache: str | Path | None = None,
    *,
    opt_batch: int = 1,
    max_batch: int = 8,
    calibration_cache: str | Path | None = None,
    device: int = 0,
) -> Path:
    """Build and serialize a TensorRT engine for ``bundle``; writes the engine and its stamp.

    ``out_path`` defaults to ``<bundle>/model.engine``. INT8 needs
    ``calibration_frames`` (gray uint8 regions, at least 8) or an existing
    ``calibration_cache`` (default ``<engine>.calib``). ``timing_cache`` is
    loaded when it exists and saved after the build, which makes rebuilds fast.
    """
    trt = import_tensorrt()
    try:
        import torch
    except ImportError:
        raise EngineError(
            "building a TensorRT engine needs torch with CUDA for its buffers; on a Jetson "
            "install NVIDIA's torch wheel (docs/jetson.md)"
        ) from None

    if not isinstance(bundle, ModelBundle):
        bundle = load_bundle(bundle)
    if not torch.cuda.is_available():
        raise EngineError("building a TensorRT engine needs a CUDA GPU visible to torch")
    if not 1 <= opt_batch <= max_batch:
        raise EngineError(f"need 1 <= opt_batch <= max_batch, got {opt_batch} and {max_batch}")
    _check_precision_flags(trt, fp16, int8)
    out = Path(out_path) if out_path is not None else default_engine_path(bundle)
    calib_cache = Path(calibration_cache) if calibration_cache else out.with_suffix(".calib")
    if int8 and len(calibration_frames or ()) < CALIBRATION_BATCH and not calib_cache.is_file():
        raise EngineError(
            f"INT8 needs at least {CALIBRATION_BATCH} calibration frames or a calibration "
            f"cache ({calib_cache}); pass calibration_frames from the validation set"
        )
    torch.cuda.set_device(device)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network, _parser = _parse_onnx(trt, builder, logger, bundle.onnx_path)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    size = bundle.input_size

    def dims(n: int) -> tuple[int, int, int, int]:
        return (n, 1, size, size)

    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, dims(1), dims(opt_batch), dims(max_batch))
    config.add_optimization_profile(profile)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    # Held in locals for the whole build: the config does not own the Python objects.
    calibrator = None
    if int8:
        config.set_flag(trt.BuilderFlag.INT8)
        calib_profile = builder.create_optimization_profile()
        fixed = dims(CALIBRATION_BATCH)
        calib_profile.set_shape(INPUT_NAME, fixed, fixed, fixed)
        config.set_calibration_profile(calib_profile)
        calibrator = _make_calibrator(
            trt, torch, calibration_frames, size, calib_cache, bundle.fit, bundle.norm
        )
        config.int8_calibrator = calibrator
    cache_file = Path(timing_cache) if timing_cache is not None else None
    cache = _attach_timing_cache(config, cache_file) if cache_file is not None else None
    log.info(
        "building TensorRT %s engine (%s, batch 1..%d) from %s",
        trt.__version__,
        precision_name(fp16, int8),
        max_batch,
        bundle.onnx_path,
    )
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError("TensorRT failed to build the engine; see the TensorRT log above")
    if cache_file is not None and cache is not None:
        _write_atomic(cache_file, bytes(memoryview(config.get_timing_cache().serialize())))
    _write_atomic(out, bytes(memoryview(serialized)))
    system = current_system(bundle.onnx_sha256, device)
    stamp = EngineStamp(
        tensorrt=system.tensorrt,
        gpu=system.gpu,
        compute_capability=system.compute_capability,
        bundle_sha256=bundle.onnx_sha256,
        precision=precision_name(fp16, int8),
        max_batch=max_batch,
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    )
    _write_atomic(stamp_path(out), (json.dumps(stamp.to_dict(), indent=2) + "\n").encode())
    log.info("wrote %s and %s", out, stamp_path(out))
    return out


@dataclass(frozen=True)
class ParityResult:
    """Largest differences between an engine and the reference over the same inputs."""

    frames: int
    batch_sizes: tuple[int, ...]
    grade_probs: float
    p_valid: float
    heatmap_probs: float
    logits: float
    tolerance: float

    @property
    def probabilities(self) -> float:
        return max(self.grade_probs, self.p_valid, self.heatmap_probs)

    @property
    def ok(self) -> bool:
        return bool(self.probabilities <= self.tolerance)  # NaN and inf fail

    def summary(self) -> str:
        batches = " and ".join(str(b) for b in self.batch_sizes)
        return (
            f"max abs diff {self.probabilities:.2e} on probabilities (grade "
            f"{self.grade_probs:.1e}, valid {self.p_valid:.1e}, heatmap {self.heatmap_probs:.1e}), "
            f"{self.logits:.2e} on "
            f"logits; {self.frames} phantom frames at batch {batches}; tolerance "
            f"{self.tolerance:.0e}: {'OK' if self.ok else 'FAILED'}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "batch_sizes": list(self.batch_sizes), "ok": self.ok}


def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    diff = np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))
    return float(diff.max()) if np.all(np.isfinite(diff)) else float("inf")


def _probabilities(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {
        "grade_probs": softmax(np.asarray(raw["grade_logits"], dtype=np.float32), axis=1),
        "p_valid": sigmoid(np.asarray(raw["valid_logit"], dtype=np.float32)),
        "heatmap_probs": sigmoid(np.asarray(raw["heatmap_logits"], dtype=np.float32)),
    }


def compare_engines(
    reference: Engine, candidate: Engine, frames: Sequence[np.ndarray], tolerance: float
) -> ParityResult:
    """Run both engines on ``frames`` at batch 1 and at the candidate's largest batch."""
    if len(frames) == 0:
        raise ValueError("compare_engines needs at least one frame")
    size = candidate.bundle.input_size
    largest = min(candidate.max_batch or len(frames), reference.max_batch or len(frames))
    batch_sizes = tuple(sorted({1, min(largest, len(frames))}))
    worst = dict.fromkeys(("grade_probs", "p_valid", "heatmap_probs", "logits"), 0.0)
    for n in batch_sizes:
        for start in range(0, len(frames), n):
            batch = preprocess_batch(
                frames[start : start + n], size, candidate.bundle.fit, candidate.bundle.norm
            )
            ref, got = reference.infer(batch), candidate.infer(batch)
            for key in ref:
                worst["logits"] = max(worst["logits"], _max_abs(ref[key], got[key]))
            p_ref, p_got = _probabilities(ref), _probabilities(got)
            for key in p_ref:
                worst[key] = max(worst[key], _max_abs(p_ref[key], p_got[key]))
    return ParityResult(frames=len(frames), batch_sizes=batch_sizes, tolerance=tolerance, **worst)


def parity_check(
    bundle: ModelBundle,
    engine_path: Path,
    frames: Sequence[np.ndarray],
    tolerance: float,
    *,
    cuda_graph: bool = True,
) -> ParityResult:
    """The TensorRT engine at ``engine_path`` vs ONNX Runtime on the CPU (float32)."""
    from pivh_live.engines import create_engine

    with (
        create_engine("onnxruntime", bundle, device="cpu") as reference,
        create_engine(
            "tensorrt", bundle, engine_path=engine_path, cuda_graph=cuda_graph
        ) as candidate,
    ):
        return compare_engines(reference, candidate, frames, tolerance)


def record_parity(engine_path: Path, result: ParityResult) -> None:
    """Add the parity result to the engine's stamp (read_stamp ignores extra keys)."""
    path = stamp_path(engine_path)
    data = json.loads(path.read_text(encoding="utf-8"))
    data["parity"] = {"reference": "onnxruntime cpu float32", **result.to_dict()}
    _write_atomic(path, (json.dumps(data, indent=2) + "\n").encode())


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pivh_live.engines.tensorrt_build``: the same as ``pivh-live build-engine``."""
    import argparse

    from pivh_live.cli import configure_logging
    from pivh_live.commands import build_engine as command
    from pivh_live.errors import PivhError

    parser = argparse.ArgumentParser(
        prog="python -m pivh_live.engines.tensorrt_build", description=command.__doc__
    )
    command.configure(parser)
    args = parser.parse_args(argv)
    configure_logging(0, False)
    try:
        return command.main(args)
    except PivhError as e:
        sys.stderr.write(f"build-engine: error: {e}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
