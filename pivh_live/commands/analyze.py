"""Analyse recorded clips offline (video, image folder, DICOM), as fast as the machine allows.

Runs the live pipeline's own stages with pacing off and media time for the
smoothing, and writes OUT/frames.jsonl (one line per frame) and
OUT/summary.json (clip grade, clip P(PIVH), alert frames, ...); the format is
in docs/analyze.md. Several inputs go to OUT/<name>/ each plus OUT/index.json;
a bad input is reported and the others are still analysed (exit code 1).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "sources",
        nargs="+",
        type=Path,
        metavar="SOURCE",
        help="video file, image folder or DICOM file (several for a batch)",
    )
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument(
        "--model",
        type=Path,
        default=None,
        help="model bundle (default: $PIVH_LIVE_MODEL or the shipped models/pivh-phantom)",
    )
    p.add_argument("--engine", default="onnxruntime", help="engine name (default onnxruntime)")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for the engine (onnxruntime/torch; default the engine's)",
    )
    p.add_argument(
        "--roi",
        default=None,
        metavar="x,y,w,h",
        help="crop every frame to this region (pixels), or 'auto' to detect it on "
        "screen recordings; default: the whole frame",
    )
    p.add_argument(
        "--overlay-video",
        action="store_true",
        help="also write OUT/overlay.mp4: the region with the live overlay",
    )
    p.add_argument("--batch", type=int, default=8, help="frames per engine call (default 8)")


def main(args: argparse.Namespace) -> int:
    import sys

    from pivh_live.errors import ConfigError
    from pivh_live.pipeline.analyze import AnalyzeOptions, analyze
    from pivh_live.region import parse_roi

    if args.batch < 1:
        raise ConfigError(f"--batch must be >= 1, got {args.batch}")
    auto = args.roi is not None and args.roi.strip().lower() == "auto"
    roi = parse_roi(args.roi) if args.roi is not None and not auto else None
    engine_options = {"threads": args.threads} if args.threads is not None else {}
    options = AnalyzeOptions(
        model=args.model,
        engine=args.engine,
        engine_options=engine_options,
        roi=roi,
        auto_roi=auto,
        overlay_video=args.overlay_video,
        batch=args.batch,
    )
    items = analyze(args.sources, args.out, options)
    failed = 0
    for item in items:
        if item.error is not None:
            failed += 1
            sys.stderr.write(f"{item.source}: error: {item.error}\n")
            continue
        s = item.summary or {}
        grade = s["clip_grade"] if s.get("assessable") else "not assessable"
        sys.stdout.write(
            f"{item.source}: clip grade {grade}, P(PIVH) {s['p_pivh']:.3f}, "
            f"{s['alert_frames']}/{s['frames']} alert frames -> {item.out_dir}\n"
        )
    if failed:
        sys.stderr.write(f"{failed} of {len(items)} inputs failed; see {args.out}/index.json\n")
        return 1
    return 0
