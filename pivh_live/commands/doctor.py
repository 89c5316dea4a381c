"""Check this machine for the live analyser and say what to fix, one line per check.

Checks: Python and pivh-live versions, the model bundle, inference engines,
ONNX Runtime providers, TensorRT and the built engine, the GPU (Jetson power
mode), capture devices and their formats, disk space for recordings, the
ipc socket directory and the web port. Each line is OK, WARN or FAIL; the
exit code is 0 when nothing FAILs. Every probe has a timeout.
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_PORT = 8765  # pivh_live.doctor.DEFAULT_PORT; kept here so --help imports nothing


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        type=Path,
        default=None,
        help="model bundle to check (default: $PIVH_LIVE_MODEL or the shipped models/pivh-phantom)",
    )
    p.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"web display port to check (default {DEFAULT_PORT})",
    )
    p.add_argument("--json", action="store_true", help="print the checks as JSON")


def main(args: argparse.Namespace) -> int:
    import json
    import sys

    from pivh_live.doctor import exit_code, run_checks

    checks = run_checks(model=args.model, port=args.port)
    if args.json:
        sys.stdout.write(json.dumps([c.to_dict() for c in checks], indent=2) + "\n")
    else:
        sys.stdout.write("".join(c.line() + "\n" for c in checks))
        fails = sum(c.status == "FAIL" for c in checks)
        warns = sum(c.status == "WARN" for c in checks)
        sys.stdout.write(f"{len(checks)} checks: {fails} FAIL, {warns} WARN\n")
    return exit_code(checks)
