"""Command-line entry point: ``pivh-live <command> ...``.

Each command lives in ``pivh_live/commands/<name>.py`` with two functions:
``configure(parser)`` adds its options and ``main(args) -> int`` runs it.
Command modules import heavy dependencies inside ``main`` so that ``--help``
is fast and works without optional extras. Logging is configured here only.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from pivh_live import DISCLAIMER, __version__
from pivh_live.errors import PivhError

log = logging.getLogger("pivh_live")

# name -> (module, one-line help). Order is the order shown in --help.
COMMANDS: dict[str, tuple[str, str]] = {
    "phantom": ("pivh_live.commands.phantom", "generate a synthetic cranial-ultrasound dataset"),
    "check-data": ("pivh_live.commands.check_data", "validate a dataset directory"),
    "train": ("pivh_live.commands.train", "train the PIVH network on a dataset"),
    "evaluate": ("pivh_live.commands.evaluate", "evaluate a model bundle on a dataset"),
    "export": ("pivh_live.commands.export", "export a checkpoint to a model bundle"),
    "recalibrate": (
        "pivh_live.commands.recalibrate",
        "correct a bundle's grades to a deployment's prevalence, re-pick its thresholds",
    ),
    "analyze": ("pivh_live.commands.analyze", "analyse recorded clips offline"),
    "run": ("pivh_live.commands.run", "run the live analyser"),
    "review": ("pivh_live.commands.review", "serve recorded sessions in a browser"),
    "record": ("pivh_live.commands.record", "record a session without a display"),
    "build-engine": ("pivh_live.commands.build_engine", "build a TensorRT engine for a bundle"),
    "doctor": ("pivh_live.commands.doctor", "check this machine and say what to fix"),
    "bench": ("pivh_live.commands.bench", "benchmark frame latency"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pivh-live",
        description=(
            "Real-time PIVH detection and Papile grading on neonatal cranial "
            f"ultrasound. {DISCLAIMER}."
        ),
    )
    parser.add_argument("--version", action="version", version=f"pivh-live {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=help_text, description=module.__doc__)
        module.configure(p)
        p.set_defaults(_module=module_name)
    return parser


def configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    configure_logging(args.verbose, args.quiet)
    module = importlib.import_module(args._module)
    try:
        return int(module.main(args) or 0)
    except PivhError as exc:
        sys.stderr.write(f"pivh-live {args.command}: error: {exc}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write(f"pivh-live {args.command}: interrupted\n")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
