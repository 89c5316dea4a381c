"""Run the live analyser: capture -> region -> inference -> display + recorder, until Ctrl-C.

Defaults: the synthetic phantom scanner (`phantom:`), the shipped model, the
ONNX Runtime engine, capture and inference as supervised processes (a
crashed stage is restarted), the bedside page at http://127.0.0.1:8765/ and a
recording in the session store (review it with `pivh-live review`). A status
line (fps, latency, alert, grade, drops) is logged every few seconds.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any


def live_display_factory(args: argparse.Namespace, session: Path | None) -> Any:
    """The bedside display (docs/web.md) unless --headless."""
    if args.headless:
        return None
    from pivh_live.bundle import load_bundle
    from pivh_live.overlay import OverlaySettings
    from pivh_live.pipeline.stages import smoothing_config
    from pivh_live.web.server import start_live_display

    bundle = load_bundle(_check_model(args.model, args.engine))
    store = None
    if not args.no_record:
        from pivh_live.recording import SessionStore

        store = SessionStore(args.data_dir)
    return start_live_display(host=args.host, port=args.port, engine=args.engine,
                              model_version=bundle.version,
                              settings=OverlaySettings.from_smoothing(
                                  smoothing_config(bundle), fit=bundle.fit),
                              store=store)  # fmt: skip


def recorder_factory(args: argparse.Namespace, session: Path | None) -> Any:
    """A recorder into the session store unless --no-record."""
    if args.no_record:
        return None
    from pivh_live.commands.record import make_recorder

    return make_recorder(args, _check_model(args.model, args.engine))


# Factories (args, results_dir or None) -> consumer or None.
CONSUMER_FACTORIES: list[Callable[[argparse.Namespace, Path | None], Any]] = [
    live_display_factory,
    recorder_factory,
]


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
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for the engine (default 1: the other cores are for capture and display)",
    )
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
        help="no display: only the status line, the recording and --results-dir",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address of the live page (default 127.0.0.1: this machine only; any "
        "other address requires the access token printed at start)",
    )
    p.add_argument("--port", type=int, default=8765, help="port of the live page (default 8765)")
    p.add_argument(
        "--results-dir",
        "--session-dir",
        dest="session_dir",
        type=Path,
        default=None,
        help="also write every result to DIR/frames.jsonl",
    )
    p.add_argument(
        "--status-every",
        type=float,
        default=5.0,
        metavar="S",
        help="seconds between status lines (default 5)",
    )
    from pivh_live.commands.record import add_recording_options

    add_recording_options(p)


def main(args: argparse.Namespace) -> int:
    import logging
    import signal

    from pivh_live.engines import live_engine_options
    from pivh_live.errors import ConfigError
    from pivh_live.pipeline.config import LiveConfig
    from pivh_live.pipeline.consumers import JsonlResultWriter, StatusReporter
    from pivh_live.pipeline.live import run_live, run_single
    from pivh_live.region import parse_roi
    from pivh_live.sources import create_source, parse_spec

    log = logging.getLogger("pivh_live.run")
    if args.duration is not None and args.duration <= 0:
        raise ConfigError(f"--duration must be > 0, got {args.duration}")
    source = create_source(args.source)  # a bad spec fails here, with its one-line message
    if parse_spec(args.source).scheme == "file":
        # A missing or unreadable file does not come back by waiting: say so now.
        source.open()
        source.close()
    if args.profile:
        from pivh_live.profiles import load_profile

        load_profile(args.profile)  # likewise a missing or malformed profile
    bundle_path = _check_model(args.model, args.engine)

    counters: dict[str, int] = {}
    reporter = StatusReporter(args.status_every, drops=lambda: dict(counters))
    consumers: list[Any] = [reporter]
    try:
        if args.session_dir is not None:
            consumers.append(JsonlResultWriter(args.session_dir / "frames.jsonl", live=True))
        consumers += [c for f in CONSUMER_FACTORIES if (c := f(args, args.session_dir)) is not None]
        recorder = next((c for c in consumers if getattr(c, "needs_record", False)), None)
        display = next((c for c in consumers if hasattr(c, "hub")), None)
        if display is not None and recorder is not None:
            display.hub.notice = lambda: recorder.warning  # e.g. RECORDING STOPPED: disk full
        config = LiveConfig(
            source=args.source,
            model=bundle_path,
            engine=args.engine,
            engine_options=live_engine_options(args.engine, args.threads),
            roi=parse_roi(args.roi) if args.roi else None,
            profile=args.profile,
            record=recorder is not None,
            log_level=logging.getLogger().getEffectiveLevel(),
        )
        stopping = {"flag": False}
        shown: dict[str, str | None] = {"warning": None}

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
            if recorder is not None:
                counters["recorder_missed"] = recorder.status().missed
                if recorder.warning != shown["warning"]:
                    shown["warning"] = recorder.warning
                    if recorder.warning:
                        log.warning("%s", recorder.warning)
            reporter.tick()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        log.info("source %s; press Ctrl-C to stop", args.source)
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
    finally:
        for c in consumers:
            c.close()  # idempotent; a failure before the run still finishes the session
    log.info("stopped (%s): %d results in %.1f s, %d stage restarts",
             report.reason, report.results, report.seconds, report.restarts)  # fmt: skip
    if recorder is not None:
        st = recorder.status()
        log.info("session %s: %d video frames, %d missed; review with `pivh-live review`",
                 st.session_id, st.frames, st.missed)  # fmt: skip
        if st.warning:
            log.warning("%s", st.warning)
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
