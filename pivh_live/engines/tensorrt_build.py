"""Build a TensorRT 10 engine from a bundle's model.onnx (and say the equivalent trtexec line).

The engine has one optimisation profile over the batch (min 1, opt 1, max 8
by default: the live loop runs batch 1, offline review batches up to 8).
FP16 uses the TensorRT 10 builder flag; INT8 uses entropy calibration over
given frames with a calibration cache. TensorRT 11 removed both flags (it
builds strongly typed networks only), so there FP16/INT8 need a converted
ONNX (NVIDIA ModelOpt) and this builder asks for fp16=False.

Run as ``python -m pivh_live.engines.tensorrt_build models/NAME`` on the
machine that will run the engine: engines are specific to the TensorRT
version and the GPU.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import shlex
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pivh_live.bundle import INPUT_NAME, ModelBundle, load_bundle
from pivh_live.engines.tensorrt import (
    EngineStamp,
    current_system,
    default_engine_path,
    stamp_path,
)
from pivh_live.errors import EngineError, PivhError

log = logging.getLogger(__name__)

CALIBRATION_BATCH = 8


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


def _make_calibrator(
    trt: Any, torch: Any, frames: Sequence[np.ndarray] | None, size: int, cache: Path
) -> Any:
    """IInt8EntropyCalibrator2 over ``frames`` (gray uint8 regions) with a cache file."""
    from pivh_live.preprocess import preprocess_batch

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
            self._device.copy_(torch.from_numpy(preprocess_batch(chunk, size)))
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
                "build with fp16=False/int8=False, or convert model.onnx with NVIDIA ModelOpt first"
            )


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
    import tensorrt as trt
    import torch

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
    if int8:
        config.set_flag(trt.BuilderFlag.INT8)
        calib_profile = builder.create_optimization_profile()
        fixed = dims(CALIBRATION_BATCH)
        calib_profile.set_shape(INPUT_NAME, fixed, fixed, fixed)
        config.set_calibration_profile(calib_profile)
        config.int8_calibrator = _make_calibrator(trt, torch, calibration_frames, size, calib_cache)
    cache_file = Path(timing_cache) if timing_cache is not None else None
    if cache_file is not None:
        data = cache_file.read_bytes() if cache_file.is_file() else b""
        config.set_timing_cache(config.create_timing_cache(data), ignore_mismatch=False)
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
    if cache_file is not None:
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


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pivh_live.engines.tensorrt_build BUNDLE [--out ENGINE] ...``."""
    p = argparse.ArgumentParser(prog="python -m pivh_live.engines.tensorrt_build")
    p.add_argument("bundle", type=Path, help="model bundle directory (models/NAME)")
    p.add_argument("--out", type=Path, default=None, help="default BUNDLE/model.engine")
    p.add_argument("--fp32", action="store_true", help="no FP16 (needed on TensorRT 11)")
    p.add_argument("--workspace-mb", type=int, default=1024)
    p.add_argument("--timing-cache", type=Path, default=None)
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--print-trtexec", action="store_true", help="print the trtexec line and exit")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    out = args.out or args.bundle / "model.engine"
    try:
        if args.print_trtexec:
            bundle = load_bundle(args.bundle)
            line = trtexec_command(
                bundle.onnx_path,
                out,
                fp16=not args.fp32,
                workspace_mb=args.workspace_mb,
                timing_cache=args.timing_cache,
                input_size=bundle.input_size,
                max_batch=args.max_batch,
            )
            sys.stdout.write(line + "\n")
            return 0
        build_engine(
            args.bundle,
            out,
            fp16=not args.fp32,
            workspace_mb=args.workspace_mb,
            timing_cache=args.timing_cache,
            max_batch=args.max_batch,
        )
    except PivhError as e:
        log.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
