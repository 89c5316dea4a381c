"""Generate a seeded synthetic neonatal cranial-ultrasound dataset.

Writes DIR/labels.csv, one video per case, per-frame labels and lesion masks
in the format of docs/dataset.md. The phantom is the project's only data
source: no patient data is used or needed.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, required=True, help="output dataset directory")
    p.add_argument("--cases", type=int, default=20, help="number of clips (default 20)")
    p.add_argument("--seed", type=int, default=0, help="random seed; same seed, same bytes")
    p.add_argument(
        "--screen",
        action="store_true",
        help="render each clip inside a full scanner screen (HDMI capture look) "
        "with UI chrome and fake burned-in identifiers; the image region "
        "is recorded in labels.csv",
    )
    p.add_argument(
        "--prevalence",
        choices=("balanced", "nicu", "normal"),
        default="balanced",
        help="grade mix: balanced (equal 0-IV), nicu (KNN VLBW prevalence) or "
        "normal (grade 0 heads only)",
    )
    p.add_argument("--seconds", type=float, default=5.0, help="clip length (default 5)")
    p.add_argument("--fps", type=float, default=25.0, help="frame rate (default 25)")
    p.add_argument(
        "--codec",
        choices=("libx264", "ffv1"),
        default="libx264",
        help="video codec (default libx264; ffv1 is lossless)",
    )
    p.add_argument(
        "--workers", type=int, default=0, help="worker processes (default: number of CPUs)"
    )
    p.add_argument(
        "--preview",
        action="store_true",
        help="also write DIR/preview.png, a contact sheet of frames per grade",
    )


def main(args: argparse.Namespace) -> int:
    from pivh_live.phantom.writer import write_dataset

    write_dataset(
        args.out,
        n_cases=args.cases,
        seed=args.seed,
        screen=args.screen,
        prevalence=args.prevalence,
        seconds=args.seconds,
        fps=args.fps,
        codec=args.codec,
        workers=args.workers or None,
        preview=args.preview,
    )
    return 0
