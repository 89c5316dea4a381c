"""Run the live analyser: capture -> region -> inference -> consumers, until Ctrl-C.

Defaults: the synthetic phantom scanner (`phantom:`), the shipped model, the
ONNX Runtime engine, capture and inference as supervised processes (a
crashed stage is restarted). Results go to SESSION/frames.jsonl and a status
line (fps, latency, alert, grade, drops) is logged every few seconds.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Factories (args, session_dir) -> consumer or None; the display and the recorder add theirs.
CONSUMER_FACTORIES: list[Callable[[argparse.Namespace, Path], Any]] = []


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--source",
        default="phantom:",
        help="source spec (docs/sources.md), e.g. v4l2:/dev/video0?format=mjpeg; default: phantom:",
    )
    p.add_argument(
        "--model",
        type=Path,
        default=None,
        help="model bundle (default: $PIVH_LIVE_MODEL or the shipped models/pivh-phantom)",
    )
    p.add_argument("--engine", default="onnxruntime", help="engine name (default onnxruntime)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for the engine")
    p.add_argument(
        "--roi",
        default=None,
        metavar="x,y,w,h",
        help="image region in pixels (default: the profile's, else auto-detected)",
    )
    p.add_argument("--profile", default=None, help="scanner profile with saved ROIs")
    p.add_argument(
        "--single-process",
        action="store_true",
        help="run every stage in one loop (debugging, benchmark baseline)",
    )
    p.add_argument("--no-record", action="store_true", help="do not feed a recorder")
    p.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="S",
        help="stop after S seconds (default: run until Ctrl-C)",
    )
    p.add_argument(
        "--headless",
        action="store_true",
        help="no display: log a status line and write results to the session directory",
    )
    p.add_argument(
        "--session-dir",
        type=Path,
        default=None,
        help="where frames.jsonl goes (default: pivh-live-sessions/<start time>)",
    )
    p.add_argument(
        "--status-every",
        type=float,
        default=5.0,
        metavar="S",
        help="seconds between status lines (default 5)",
    )


def main(args: argparse.Namespace) -> int:
    import logging
    import signal
    import time

    from pivh_live.errors import ConfigError
    from pivh_live.pipeline.config import LiveConfig
    from pivh_live.pipeline.consumers import JsonlResultWriter, StatusReporter
    from pivh_live.pipeline.live import run_live, run_single
    from pivh_live.region import parse_roi
    from pivh_live.sources import create_source

    log = logging.getLogger("pivh_live.run")
    if args.duration is not None and args.duration <= 0:
        raise ConfigError(f"--duration must be > 0, got {args.duration}")
    create_source(args.source)  # a bad spec fails here, with its one-line message
    if args.profile:
        from pivh_live.profiles import load_profile

        load_profile(args.profile)  # likewise a missing or malformed profile
    bundle_path = _check_model(args.model, args.engine)
    session = args.session_dir or Path("pivh-live-sessions") / time.strftime("%Y%m%d-%H%M%S")
    if not args.headless:
        log.warning("the display is not available in this version; running headless")

    counters: dict[str, int] = {}
    reporter = StatusReporter(args.status_every, drops=lambda: dict(counters))
    consumers: list[Any] = [JsonlResultWriter(session / "frames.jsonl", live=True), reporter]
    consumers += [c for f in CONSUMER_FACTORIES if (c := f(args, session)) is not None]
    record = not args.no_record and any(getattr(c, "needs_record", False) for c in consumers)
    config = LiveConfig(
        source=args.source,
        model=bundle_path,
        engine=args.engine,
        engine_options={"threads": args.threads} if args.threads is not None else {},
        roi=parse_roi(args.roi) if args.roi else None,
        profile=args.profile,
        record=record,
        log_level=logging.getLogger().getEffectiveLevel(),
    )

    stopping = {"flag": False}

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
        )
        reporter.tick()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    log.info("session %s; source %s; press Ctrl-C to stop", session, args.source)
    try:
        if args.single_process:
            report = run_single(config, consumers, duration_s=args.duration,
                                stop=lambda: stopping["flag"])  # fmt: skip
        else:
            report = run_live(config, consumers, duration_s=args.duration,
                              stop=lambda: stopping["flag"], on_tick=on_tick)  # fmt: skip
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info(
        "stopped (%s): %d results in %.1f s, %d stage restarts; results in %s",
        report.reason, report.results, report.seconds, report.restarts, session / "frames.jsonl",
    )  # fmt: skip
    return 0


def _check_model(model: Path | None, engine: str) -> Path:
    """Fail before starting any process if the bundle or engine is unusable."""
    from pivh_live.bundle import default_bundle_path, load_bundle
    from pivh_live.engines import available_engines
    from pivh_live.errors import EngineError

    bundle = load_bundle(model or default_bundle_path())
    reason = available_engines().get(engine, f"unknown engine {engine!r}")
    if reason is not None:
        raise EngineError(f"engine {engine!r} cannot run here: {reason}")
    return bundle.path
