"""Validate a dataset directory against docs/dataset.md and report problems by line."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", type=Path, help="dataset directory (holds labels.csv)")
    p.add_argument(
        "--decode",
        action="store_true",
        help="also decode every case's media and check frame counts",
    )


def main(args: argparse.Namespace) -> int:
    import sys

    from pivh_live.dataset import validate_dataset

    problems = validate_dataset(args.data, decode=args.decode)
    for problem in problems:
        sys.stdout.write(problem + "\n")
    if problems:
        sys.stdout.write(f"{len(problems)} problem(s) in {args.data}\n")
        return 1
    sys.stdout.write(f"{args.data}: OK\n")
    return 0
