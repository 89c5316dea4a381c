"""Recalibrate a bundle to a deployment's grade mix (prior correction) and re-pick its thresholds.

The network learnt its grade probabilities on the training pool's mix of
grades, weighted by class; a scanner in a NICU sees far fewer lesion frames.
This command adds per-grade offsets log(target / training prior) to the grade
logits (stored in the card, applied by every engine) and re-picks the
operating thresholds on the same validation cases training used. Give the
--data, --val-data, --train-only and --config of the training run, and a
--target dataset drawn at the deployment's prevalence. The weights are not
changed. See docs/training.md, "Prior correction".
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pivh_live.commands.train import add_data_options


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=Path, required=True, help="the bundle to recalibrate")
    add_data_options(p)  # the training run's --data, --val-data, --train-only, --config
    p.add_argument(
        "--target",
        type=Path,
        nargs="+",
        required=True,
        metavar="DIR",
        help="labelled dataset(s) at the deployment's prevalence: their graded frames give "
        "the target prior (they are only counted, never scored)",
    )
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="bundle directory to write; a bundle already there is replaced once the new one loads",
    )
    p.add_argument("--version", default=None, help="the new bundle's version")
    p.add_argument("--engine", default="onnxruntime", help="engine that scores validation")
    p.add_argument(
        "--val-frame-stride",
        type=int,
        default=1,
        metavar="N",
        help="score every N-th validation frame (default 1: every frame, as the display does)",
    )


def main(args: argparse.Namespace) -> int:
    import logging

    from pivh_live.training.config import load_config
    from pivh_live.training.recalibrate import recalibrate

    card = recalibrate(
        args.model,
        args.data,
        args.target,
        args.out,
        load_config(args.config),
        val_dir=args.val_data,
        train_only=args.train_only,
        version=args.version,
        engine=args.engine,
        val_frame_stride=args.val_frame_stride,
    )
    logging.getLogger("pivh_live").info(
        "wrote %s %s to %s: thresholds %s, validation score %s (without the correction %s); "
        "evaluate it on held-out data before use",
        card["name"],
        card["version"],
        args.out,
        card["thresholds"],
        card["metrics"]["validation"].get("score"),
        card["metrics"]["validation_without_prior_correction"].get("score"),
    )
    return 0
