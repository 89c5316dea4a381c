"""Train the PIVH network on a dataset in the documented format.

Splits by case (never by frame), weights classes, augments, validates every
epoch, keeps the best checkpoint and picks operating thresholds on the
validation cases. Needs the `train` extra (torch).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def configure(p: argparse.ArgumentParser) -> None:
    add_data_options(p)
    p.add_argument(
        "--out",
        type=Path,
        default=Path("runs/train"),
        help="run directory for checkpoints and logs (default runs/train)",
    )
    p.add_argument("--epochs", type=int, default=None, help="override the config's epochs")
    p.add_argument("--seed", type=int, default=None, help="override the config's seed")
    p.add_argument("--resume", action="store_true", help="resume from OUT/last.pt")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: up to 2; use 1 on a busy machine)",
    )


def add_data_options(p: argparse.ArgumentParser) -> None:
    """--data, --val-data, --train-only, --config: also given to `recalibrate` for the same run."""
    p.add_argument(
        "--data",
        type=Path,
        nargs="+",
        required=True,
        help="training dataset directory (several are pooled)",
    )
    p.add_argument(
        "--val-data",
        type=Path,
        default=None,
        help="separate validation dataset (default: hold out cases of --data)",
    )
    p.add_argument(
        "--train-only",
        type=Path,
        nargs="+",
        default=[],
        metavar="DIR",
        help="more datasets whose cases only train, never validate: the validation "
        "cases held out of --data stay the same, so scores stay comparable",
    )
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="JSON training config (defaults: see docs/training.md)",
    )


def main(args: argparse.Namespace) -> int:
    from pivh_live.training.train import train_from_cli

    train_from_cli(args)
    return 0
