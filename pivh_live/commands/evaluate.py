"""Evaluate a model bundle on a dataset: frame- and clip-level metrics and a report.

Any-PIVH AUC with a 95% bootstrap CI, sensitivity/specificity/PPV/NPV at the
bundle's operating threshold (also re-weighted to NICU prevalence), severe
(III-IV) AUC and sensitivity, grade confusion matrix, quadratic weighted
kappa and calibration. Clip results use the live pipeline's smoothing code.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pivh_live.evaluation.shifts import describe


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=Path, required=True, help="model bundle directory")
    p.add_argument(
        "--data",
        type=Path,
        nargs="+",
        required=True,
        help="dataset directory; several: one report each in OUT/<dir name>/ and the pooled "
        "report over all their clips in OUT",
    )
    p.add_argument("--out", type=Path, required=True, help="report directory")
    p.add_argument("--engine", default="onnxruntime", help="engine name (default onnxruntime)")
    p.add_argument(
        "--bootstrap",
        type=int,
        default=1000,
        help="bootstrap resamples for confidence intervals (default 1000)",
    )
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument(
        "--split",
        choices=("train", "val", "test"),
        default=None,
        help="evaluate only the cases of this split (labels.csv `split` column)",
    )
    p.add_argument(
        "--shift",
        action="append",
        metavar="NAME=VALUE",
        help="re-render every frame before scoring, a robustness check; repeat to compose "
        "(docs/evaluation.md). " + describe(),
    )
    p.add_argument(
        "--gallery",
        type=int,
        default=12,
        metavar="N",
        help="show the N clips whose grade disagrees most with the label, a frame each, in "
        "the report and OUT/disagreements/ (images from the dataset, private to you; "
        "0: none; default 12)",
    )
    p.add_argument(
        "--update-card", action="store_true", help="write the metrics into the bundle's model.json"
    )


def main(args: argparse.Namespace) -> int:
    from pivh_live.evaluation.evaluate import evaluate_from_cli

    evaluate_from_cli(args)
    return 0
