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

    run.configure(p)
    add_recording_options(p)


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


def recorder_factory(args: argparse.Namespace, session_dir: Path) -> Any:
    """For `pivh_live.commands.run.CONSUMER_FACTORIES`: a recorder unless ``--no-record``."""
    from pivh_live.commands.run import _check_model

    if getattr(args, "no_record", False):
        return None
    return make_recorder(args, _check_model(args.model, args.engine))


def main(args: argparse.Namespace) -> int:
    import logging

    from pivh_live.commands.run import _check_model
    from pivh_live.errors import ConfigError
    from pivh_live.pipeline.config import LiveConfig
    from pivh_live.pipeline.consumers import StatusReporter
    from pivh_live.region import parse_roi
    from pivh_live.sources import create_source

    log = logging.getLogger("pivh_live.record")
    if args.no_record:
        raise ConfigError("record always records; use `pivh-live run --no-record` instead")
    if args.session_dir is not None:
        raise ConfigError("record keeps sessions in the session store; use --data-dir instead")
    if args.duration is not None and args.duration <= 0:
        raise ConfigError(f"--duration must be > 0, got {args.duration}")
    create_source(args.source)  # a bad spec fails here, with its one-line message
    if args.profile:
        from pivh_live.profiles import load_profile

        load_profile(args.profile)
    bundle_path = _check_model(args.model, args.engine)
    recorder = make_recorder(args, bundle_path)
    counters: dict[str, int] = {}
    reporter = StatusReporter(args.status_every, drops=lambda: dict(counters))
    config = LiveConfig(
        source=args.source,
        model=bundle_path,
        engine=args.engine,
        engine_options={"threads": args.threads} if args.threads is not None else {},
        roi=parse_roi(args.roi) if args.roi else None,
        profile=args.profile,
        record=True,
        log_level=logging.getLogger().getEffectiveLevel(),
    )
    try:
        report = drive(args, config, [reporter, recorder], reporter, counters, recorder)
    finally:
        recorder.close()
    st = recorder.status()
    log.info(
        "stopped (%s): %d results in %.1f s; session %s: %d video frames, %d missed, in %s",
        report.reason, report.results, report.seconds, st.session_id, st.frames, st.missed,
        recorder.session.dir,
    )  # fmt: skip
    if st.warning:
        log.warning("%s", st.warning)
    return 0


def drive(
    args: argparse.Namespace,
    config: Any,
    consumers: list[Any],
    reporter: Any,
    counters: dict[str, int],
    recorder: Any,
) -> Any:
    """Run the pipeline like `pivh-live run` (SIGINT/SIGTERM stop it cleanly)."""
    import logging
    import signal

    from pivh_live.pipeline.live import run_live, run_single

    log = logging.getLogger("pivh_live.record")
    stopping = {"flag": False}
    shown = {"warning": None}

    def on_signal(signum: int, frame: Any) -> None:
        if stopping["flag"]:  # asked twice: do not wait for a blocking read or backoff
            raise KeyboardInterrupt
        stopping["flag"] = True
        log.info("stopping; press Ctrl-C again to stop at once")

    def on_tick(sup: Any, host: Any) -> None:
        s = host.stats
        inference = sup.stage_info("inference") or {}
        capture = sup.stage_info("capture") or {}
        counters.update(
            consumer=s.dropped,
            unseen=s.gaps,
            inference=int(inference.get("dropped", 0)),
            record=int(capture.get("record_dropped", 0)),
            recorder_missed=recorder.status().missed,
        )
        reporter.tick()
        if recorder.warning != shown["warning"]:
            shown["warning"] = recorder.warning
            if recorder.warning:
                log.warning("%s", recorder.warning)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    log.info("recording session %s; source %s; press Ctrl-C to stop",
             recorder.session_id, args.source)  # fmt: skip
    try:
        if args.single_process:
            return run_single(config, consumers, duration_s=args.duration,
                              stop=lambda: stopping["flag"])  # fmt: skip
        return run_live(config, consumers, duration_s=args.duration,
                        stop=lambda: stopping["flag"], on_tick=on_tick)  # fmt: skip
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
