"""Benchmark frame latency.

`--mode engine` times the bare engine loop (inference only, preprocessing
excluded): the floor every other latency is compared with. Inputs are seeded
phantom frames. Results go to stdout as a table and, with --out, to JSON.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mode", choices=("engine",), default="engine",
                   help="what to time (default engine: the bare engine loop)")
    p.add_argument("--model", type=Path, default=None,
                   help="model bundle (default: the shipped models/pivh-phantom)")
    p.add_argument("--engine", default="onnxruntime", help="engine name (default onnxruntime)")
    p.add_argument("--threads", type=int, default=2,
                   help="CPU threads for the engine (default 2)")
    p.add_argument("-n", "--frames", type=int, default=500, help="timed calls (default 500)")
    p.add_argument("--warmup", type=int, default=50, help="untimed warm-up calls (default 50)")
    p.add_argument("--batch", type=int, default=1, help="frames per call (default 1)")
    p.add_argument("--seed", type=int, default=0, help="phantom seed for the input frames")
    p.add_argument("--out", type=Path, default=None, help="write the result as JSON here")


def main(args: argparse.Namespace) -> int:
    import json
    import sys

    from pivh_live.bench.engine_loop import bench_engine_loop, phantom_regions
    from pivh_live.bench.machine import machine_info
    from pivh_live.bundle import default_bundle_path, load_bundle
    from pivh_live.engines import create_engine

    bundle = load_bundle(args.model or default_bundle_path())
    options = {"threads": args.threads} if args.engine in ("onnxruntime", "torch") else {}
    frames = phantom_regions(args.seed, n=16)
    with create_engine(args.engine, bundle, **options) as engine:
        result = bench_engine_loop(
            engine, frames, n=args.frames, warmup=args.warmup, batch=args.batch
        )
    result.update(model=f"{bundle.name} {bundle.version}", machine=machine_info())
    lat = result["latency_ms"]
    sys.stdout.write(
        f"{result['engine']} batch {args.batch}: median {lat['median']:.3f} ms, "
        f"p99 {lat['p99']:.3f} ms, max {lat['max']:.3f} ms per call "
        f"({result['fps']:.0f} frames/s) on {result['machine']['cpu']}\n"
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0
