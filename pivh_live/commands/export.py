"""Export a training checkpoint to a model bundle: model.onnx (one file) + model.json card."""

from __future__ import annotations

import argparse
from pathlib import Path


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", type=Path, required=True, help="training checkpoint (.pt)")
    p.add_argument("--out", type=Path, required=True, help="bundle directory, e.g. models/NAME")
    p.add_argument("--name", default=None, help="model name (default: the out directory's name)")
    p.add_argument("--version", default="0.1.0", help="model version (default 0.1.0)")


def main(args: argparse.Namespace) -> int:
    from pivh_live.training.export import export_from_cli

    export_from_cli(args)
    return 0
