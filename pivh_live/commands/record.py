"""Record a session without a display: `pivh-live run --headless` with recording, until Ctrl-C.

Every captured image region goes to an H.264 video and every result to a
journal in the session store (``$PIVH_LIVE_DATA``, default
~/.local/share/pivh-live; docs/recording.md), with keyframes at alert onsets
and new worst grades. Old sessions are deleted by age and total size first;
recording refuses to start on a nearly full disk and stops cleanly if the
disk fills. Takes the options of `pivh-live run`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

PRESETS = ("ultrafast", "superfast", "veryfast")


def configure(p: argparse.ArgumentParser) -> None:
    from pivh_live.commands import run

    run.configure(p)  # includes the recording options


def add_recording_options(p: argparse.ArgumentParser) -> None:
    """The recording options (also for `pivh-live run`); adding them twice is a no-op."""
    if "--data-dir" in p._option_string_actions:
        return
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="session store (default: $PIVH_LIVE_DATA, else $XDG_DATA_HOME/pivh-live)",
    )
    p.add_argument(
        "--keep-days",
        type=float,
        default=30.0,
        metavar="D",
        help="delete sessions older than D days at start (default 30; 0: keep all)",
    )
    p.add_argument(
        "--max-store-gb",
        type=float,
        default=100.0,
        metavar="GB",
        help="delete the oldest sessions while the store is larger (default 100; 0: no limit)",
    )
    p.add_argument(
        "--crf", type=int, default=18, help="H.264 quality, lower is better (default 18)"
    )
    p.add_argument(
        "--preset",
        default="ultrafast",
        choices=PRESETS,
        help="x264 speed preset (default ultrafast: least CPU)",
    )


def make_recorder(args: argparse.Namespace, bundle_path: Path) -> Any:
    """A `Recorder` for a run's arguments; raises `PivhError` if it cannot start."""
    from pivh_live.bundle import load_bundle
    from pivh_live.errors import ConfigError
    from pivh_live.recording import SessionMeta, SessionStore, source_kind_of
    from pivh_live.recording.recorder import Recorder
    from pivh_live.recording.retention import GIB, RetentionPolicy
    from pivh_live.region import parse_roi

    crf = getattr(args, "crf", 18)
    if not 0 <= crf <= 51:
        raise ConfigError(f"--crf must be 0-51, got {crf}")
    bundle = load_bundle(bundle_path)
    roi = parse_roi(args.roi) if getattr(args, "roi", None) else None
    meta = SessionMeta(
        source_kind=source_kind_of(args.source),
        model_name=bundle.name,
        model_version=bundle.version,
        model_sha256=bundle.onnx_sha256,
        engine=args.engine,
        roi=None if roi is None else (roi.x, roi.y, roi.w, roi.h),
    )
    days = getattr(args, "keep_days", 30.0)
    gb = getattr(args, "max_store_gb", 100.0)
    policy = RetentionPolicy(
        max_age_days=days if days and days > 0 else None,
        max_total_bytes=round(gb * GIB) if gb and gb > 0 else None,
    )
    return Recorder(
        meta,
        SessionStore(getattr(args, "data_dir", None)),
        retention=policy,
        crf=crf,
        preset=getattr(args, "preset", "ultrafast"),
    )


def main(args: argparse.Namespace) -> int:
    from pivh_live.commands import run
    from pivh_live.errors import ConfigError

    if args.no_record:
        raise ConfigError("record always records; use `pivh-live run --no-record` instead")
    args.headless = True
    return run.main(args)
