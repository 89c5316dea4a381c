"""Benchmark frame latency: the live pipeline against the bare engine and a naive OpenCV loop.

`--mode all` (default) runs, one after another on the same frames (a 1080p
phantom scanner screen, pre-rendered once and looped in memory, paced at
--fps like a capture card): the bare engine loop (inference only: the
floor), a naive single-process OpenCV loop, and the pipeline of `pivh-live
run` with its overlay render. Latency is capture -> overlay ready, per
stage and end to end (first and last 10 frames left out), with drops,
throughput, CPU and memory. Writes OUT/bench.json, OUT/frames.csv and PNG
plots; see docs/benchmarks.md. `--mode engine` alone times the bare engine
loop on phantom image regions, as before.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pivh_live.bench.pipeline_bench import BenchConfig

DEFAULT_SOURCE = "phantom:?screen=1"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--mode",
        choices=("all", "pipeline", "engine", "naive"),
        default="all",
        help="what to time (default all: engine floor, naive loop, pipeline)",
    )
    p.add_argument(
        "--source",
        default=DEFAULT_SOURCE,
        help="source spec; the default phantom:?screen=1 (optionally &seed=N&grade=G) "
        "is a pre-rendered phantom screen clip looped in memory",
    )
    p.add_argument(
        "--fps",
        type=float,
        default=60.0,
        help="source frame rate: 30, 60, ... or 0 = as fast as possible (default 60)",
    )
    p.add_argument(
        "--resolution", default="1920x1080", help="phantom clip resolution WxH (default 1920x1080)"
    )
    length = p.add_mutually_exclusive_group()
    length.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="S",
        help="seconds per part (default 20; --soak: 1800)",
    )
    length.add_argument(
        "-n",
        "--frames",
        type=int,
        default=None,
        metavar="N",
        help="frames per part (engine mode: timed calls, default 1000)",
    )
    view = p.add_mutually_exclusive_group()
    view.add_argument(
        "--headless", action="store_true", default=True, help="no display consumer (default)"
    )
    view.add_argument(
        "--display",
        action="store_true",
        help="add the web display consumer and a client fetching every JPEG",
    )
    p.add_argument("--record", action="store_true", help="add the recorder consumer")
    p.add_argument(
        "--instances",
        type=int,
        default=1,
        metavar="N",
        help="concurrent pipelines, each in its own process (default 1)",
    )
    p.add_argument(
        "--single-process",
        action="store_true",
        help="run each pipeline in one loop instead of supervised processes",
    )
    p.add_argument(
        "--roi",
        default="auto",
        metavar="auto|inline|known|x,y,w,h",
        help="image region: auto-detect on a worker thread as `pivh-live run` does (default), "
        "'inline': auto-detect on every frame on the frame path (single process only, for "
        "comparison), the clip's known region (as a scanner profile gives it), or fixed pixels",
    )
    p.add_argument(
        "--detect-every",
        type=int,
        default=4,
        metavar="N",
        help="--roi auto with --single-process: hand a frame to the detector at most every N "
        "frames (default 4, as `pivh-live run`)",
    )
    p.add_argument(
        "--model",
        type=Path,
        default=None,
        help="model bundle (default: the shipped models/pivh-phantom)",
    )
    p.add_argument("--engine", default="onnxruntime", help="engine name (default onnxruntime)")
    p.add_argument("--device", default=None, help="engine device: auto, cpu, cuda")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for the engine (default as `pivh-live run`: 1; --mode engine: 2)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output directory (default bench-out/<time>); with --mode engine a "
        "path ending in .json is written as that one file",
    )
    p.add_argument(
        "--soak",
        action="store_true",
        help="long run: memory growth, open fds and p99 per minute (not for CI)",
    )
    p.add_argument("--clip-frames", type=int, default=60, help="frames in the looped clip")
    p.add_argument("--seed", type=int, default=0, help="phantom seed for the input frames")
    p.add_argument("--warmup", type=int, default=50, help="engine mode: untimed warm-up calls")
    p.add_argument("--batch", type=int, default=1, help="engine mode: frames per call")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    import sys
    import time
    from dataclasses import replace

    from pivh_live.errors import ConfigError

    if args.fps < 0:
        raise ConfigError(f"--fps must be 0 (as fast as possible) or more, got {args.fps}")
    if args.instances < 1:
        raise ConfigError(f"--instances must be >= 1, got {args.instances}")
    for name in ("duration", "frames"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise ConfigError(f"--{name} must be > 0, got {value}")
    if args.mode == "engine":
        return _engine_only(args)
    from pivh_live.bench.report import format_summary
    from pivh_live.bench.runner import run_bench

    out = args.out or Path("bench-out") / time.strftime("%Y%m%d-%H%M%S")
    config = replace(_config(args), out=out)
    # A soak run is about the pipeline: the baselines would take as long again each.
    mode = "pipeline" if args.soak and args.mode == "all" else args.mode
    report = run_bench(
        config,
        mode,
        soak=args.soak,
        argv=sys.argv,
        progress=not args.no_progress,
        engine_calls=args.frames,
        plots=not args.no_plots,
    )
    sys.stdout.write(format_summary(report) + "\n")
    sys.stdout.write(f"wrote {out / 'bench.json'}\n")
    return 0


def _config(args: argparse.Namespace) -> BenchConfig:
    from pivh_live.bench.clip import parse_resolution
    from pivh_live.bench.pipeline_bench import BenchConfig
    from pivh_live.sources import create_source, parse_spec

    spec = parse_spec(args.source)
    options = dict(spec.options)
    phantom_clip = spec.scheme == "phantom" and options.get("screen", "0") not in ("0", "false")
    create_source(args.source)  # a bad spec fails here with its one-line message
    duration = args.duration
    if duration is None and args.frames is None:
        duration = 1800.0 if args.soak else 20.0
    from pivh_live.engines import live_engine_options

    engine_options: dict[str, object] = dict(live_engine_options(args.engine, args.threads))
    if args.device:
        engine_options["device"] = args.device
    return BenchConfig(
        source=None if phantom_clip else args.source,
        fps=args.fps,
        resolution=parse_resolution(args.resolution),
        duration_s=duration,
        frames=args.frames,
        display=args.display,
        record=args.record,
        single_process=args.single_process,
        instances=args.instances,
        engine=args.engine,
        engine_options=engine_options,
        model=args.model,
        roi=args.roi,
        detect_every=args.detect_every,
        clip_frames=args.clip_frames,
        seed=int(options.get("seed", args.seed)),
        grade=int(options.get("grade", 3)),
    )


def _engine_only(args: argparse.Namespace) -> int:
    """The bare engine loop on phantom image regions (the original `--mode engine`)."""
    import json
    import sys

    from pivh_live.bench.engine_loop import bench_engine_loop, phantom_regions
    from pivh_live.bench.machine import machine_info
    from pivh_live.bundle import default_bundle_path, load_bundle
    from pivh_live.engines import create_engine

    bundle = load_bundle(args.model or default_bundle_path())
    options: dict[str, object] = {}
    if args.engine in ("onnxruntime", "torch"):
        options["threads"] = 2 if args.threads is None else args.threads
    if args.device:
        options["device"] = args.device
    frames = phantom_regions(args.seed, n=16)
    with create_engine(args.engine, bundle, **options) as engine:
        result = bench_engine_loop(engine, frames, n=args.frames or 500, warmup=args.warmup,
                                   batch=args.batch)  # fmt: skip
    result.update(model=f"{bundle.name} {bundle.version}", machine=machine_info())
    lat = result["latency_ms"]
    sys.stdout.write(
        f"{result['engine']} batch {args.batch}: median {lat['median']:.3f} ms, "
        f"p99 {lat['p99']:.3f} ms, max {lat['max']:.3f} ms per call "
        f"({result['fps']:.0f} frames/s) on {result['machine']['cpu']}\n"
    )
    if args.out:
        path = args.out if args.out.suffix == ".json" else args.out / "bench.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")
    return 0
