"""Build a TensorRT engine for a model bundle on this machine, then check it against ONNX Runtime.

Engines only run on the TensorRT version and GPU they were built with, so
build on the machine that runs them (a Jetson builds its own). The engine
goes to BUNDLE/model.engine with its stamp model.engine.json (TensorRT
version, GPU, bundle hash, precision, parity). The new engine replaces the
old one only after the parity check on seeded phantom frames passes.
--print-trtexec prints the equivalent trtexec line and works without
TensorRT. See docs/jetson.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "bundle",
        type=Path,
        nargs="?",
        default=None,
        help="model bundle (default: $PIVH_LIVE_MODEL or the shipped models/pivh-phantom)",
    )
    p.add_argument("--out", type=Path, default=None, help="engine (default BUNDLE/model.engine)")
    p.add_argument(
        "--fp16",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="let TensorRT use FP16 kernels (default on; --no-fp16 on TensorRT 11)",
    )
    p.add_argument("--fp32", dest="fp16", action="store_false", help=argparse.SUPPRESS)
    p.add_argument("--int8", action="store_true", help="INT8 with entropy calibration")
    p.add_argument(
        "--calibration-frames",
        type=int,
        default=64,
        metavar="N",
        help="INT8: seeded phantom frames to calibrate on (default 64; multiple of 8)",
    )
    p.add_argument(
        "--calibration-cache",
        type=Path,
        default=None,
        metavar="FILE",
        help="INT8 calibration cache, reused when present (default ENGINE with suffix .calib)",
    )
    p.add_argument(
        "--timing-cache",
        type=Path,
        default=None,
        metavar="FILE",
        help="TensorRT timing cache, loaded when present and saved after the build",
    )
    p.add_argument("--workspace-mb", type=int, default=1024, metavar="N",
                   help="builder workspace limit in MiB (default 1024)")  # fmt: skip
    p.add_argument("--max-batch", type=int, default=8, metavar="N",
                   help="largest batch the engine takes (default 8)")  # fmt: skip
    p.add_argument(
        "--parity-frames",
        type=int,
        default=16,
        metavar="N",
        help="phantom frames for the check against ONNX Runtime (default 16; 0 skips it)",
    )
    p.add_argument(
        "--parity-tolerance",
        type=float,
        default=None,
        metavar="T",
        help="max abs difference on probabilities (default: 1e-3 fp32, 2e-2 fp16, 0.1 int8)",
    )
    p.add_argument("--seed", type=int, default=0, help="phantom seed (default 0)")
    p.add_argument(
        "--print-trtexec",
        action="store_true",
        help="print the equivalent trtexec command and exit (no TensorRT needed)",
    )


def _check_args(args: argparse.Namespace) -> None:
    from pivh_live.errors import ConfigError

    checks = [
        (args.workspace_mb >= 1, f"--workspace-mb must be >= 1, got {args.workspace_mb}"),
        (args.max_batch >= 1, f"--max-batch must be >= 1, got {args.max_batch}"),
        (args.parity_frames >= 0, f"--parity-frames must be >= 0, got {args.parity_frames}"),
        (
            args.calibration_frames >= 8 or not args.int8,
            f"--calibration-frames must be >= 8 for --int8, got {args.calibration_frames}",
        ),
        (
            args.parity_tolerance is None or args.parity_tolerance > 0,
            f"--parity-tolerance must be > 0, got {args.parity_tolerance}",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def main(args: argparse.Namespace) -> int:
    import logging
    import sys

    from pivh_live.bundle import default_bundle_path, load_bundle
    from pivh_live.engines import tensorrt_build as tb
    from pivh_live.engines.tensorrt import default_engine_path

    log = logging.getLogger("pivh_live.build_engine")
    _check_args(args)
    if not args.print_trtexec:
        tb.import_tensorrt()  # fail in one line before any slow work
    bundle = load_bundle(args.bundle or default_bundle_path())
    out: Path = args.out or default_engine_path(bundle)
    calib_cache: Path = args.calibration_cache or out.with_suffix(".calib")
    # The live pipeline sends one frame per call, with its mirror under "hflip" TTA.
    opt_batch = min(2, args.max_batch) if bundle.tta == "hflip" else 1
    if args.print_trtexec:
        line = tb.trtexec_command(
            bundle.onnx_path,
            out,
            fp16=args.fp16,
            int8=args.int8,
            calibration_cache=calib_cache if args.int8 else None,
            workspace_mb=args.workspace_mb,
            timing_cache=args.timing_cache,
            input_size=bundle.input_size,
            opt_batch=opt_batch,
            max_batch=args.max_batch,
        )
        sys.stdout.write(line + "\n")
        return 0

    frames = None
    if args.int8 and not calib_cache.is_file():
        log.info("rendering %d phantom calibration frames", args.calibration_frames)
        frames = tb.phantom_frames(args.calibration_frames, seed=args.seed)
    # Build beside the target and move into place only after the parity check passes,
    # so a failed build or check leaves the previous engine untouched.
    staging = out.with_name(f".{out.name}.new")
    try:
        tb.build_engine(
            bundle,
            staging,
            fp16=args.fp16,
            int8=args.int8,
            calibration_frames=frames,
            workspace_mb=args.workspace_mb,
            timing_cache=args.timing_cache,
            opt_batch=opt_batch,
            max_batch=args.max_batch,
            calibration_cache=calib_cache,
        )
        result = _parity(args, bundle, staging, tb)
        _install(staging, out, tb)
    finally:
        for leftover in (staging, tb.stamp_path(staging)):
            leftover.unlink(missing_ok=True)
    sys.stdout.write(f"wrote {out} and {tb.stamp_path(out)}\n")
    if result is not None:
        sys.stdout.write(f"parity vs onnxruntime: {result.summary()}\n")
    return 0


def _parity(args: argparse.Namespace, bundle: Any, engine: Path, tb: Any) -> Any:
    from pivh_live.errors import EngineError

    if args.parity_frames == 0:
        return None
    precision = tb.precision_name(args.fp16, args.int8)
    tolerance = args.parity_tolerance or tb.PARITY_TOLERANCE[precision]
    frames = tb.phantom_frames(args.parity_frames, seed=args.seed + 1)
    result = tb.parity_check(bundle, engine, frames, tolerance)
    if not result.ok:
        raise EngineError(
            f"the {precision} engine differs from ONNX Runtime: {result.summary()}; the old "
            "engine was kept - try --no-fp16 (or without --int8), or raise --parity-tolerance "
            "and evaluate the engine with `pivh-live evaluate`"
        )
    tb.record_parity(engine, result)
    return result


def _install(staging: Path, out: Path, tb: Any) -> None:
    import os

    # Engine first: a crash in between leaves the new engine beside the old stamp,
    # which the loader refuses when the TensorRT version, GPU or bundle differ.
    os.replace(staging, out)
    os.replace(tb.stamp_path(staging), tb.stamp_path(out))
