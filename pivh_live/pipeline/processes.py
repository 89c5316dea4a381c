"""The stage processes of the multi-process pipeline: capture and inference.

Each process runs ``target(config, stop, beat) -> exit code`` under
`stage_main`, which the `Supervisor` spawns. Stage code calls the plain stage
classes (`pivh_live.pipeline.stages`) and the message converters; sockets
come only from `pivh_live.transport`.

- capture: source (NO SIGNAL and reconnect handled by `ResilientSource`) ->
  `RegionStage` -> region frames on ``frames`` (newest-wins, never blocks)
  and, with ``record``, on ``record`` (every frame; a full or absent
  recorder queue drops and counts instead of blocking capture).
- inference: newest region frame from ``frames`` -> `InferenceStage` ->
  result on ``results`` (newest-wins).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pivh_live.pipeline.config import CaptureConfig, InferenceConfig
from pivh_live.pipeline.messages import (
    heartbeat_message,
    region_from_message,
    region_to_message,
    result_to_message,
)
from pivh_live.realtime import settle_heap

log = logging.getLogger(__name__)

Stop = Callable[[], bool]


class Heartbeat:
    """Pushes ``heartbeat`` messages to the supervisor; never blocks (drops when nobody reads)."""

    def __init__(self, stage: str, control: str, every_s: float = 1.0) -> None:
        from pivh_live.transport import ReliablePusher

        self.stage = stage
        self.every_s = every_s
        self._push = ReliablePusher(control, bind=False, name="beat", sndhwm=16, send_timeout_ms=0)
        self._next = 0.0
        self._seq = 0

    def send(self, **info: Any) -> None:
        from pivh_live.transport import TransportError

        info = {"pid": os.getpid(), **info}
        # When the supervisor is not reading, the beat is dropped: it notices missing beats itself.
        with contextlib.suppress(TransportError):
            self._push.send(heartbeat_message(self.stage, self._seq, info))
        self._seq += 1
        self._next = time.monotonic() + self.every_s

    def maybe(self, info: Callable[[], Mapping[str, Any]]) -> None:
        if time.monotonic() >= self._next:
            self.send(**info())

    def close(self) -> None:
        self._push.close()


def resolve(target: str) -> Callable[..., Any]:
    """``"module:function"`` -> the function."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def _set_process_name(name: str) -> None:
    """Name this process for ps/top/pgrep (``pkill -KILL pivh-inference``); Linux only."""
    with contextlib.suppress(OSError):
        Path("/proc/self/comm").write_text(name[:15], encoding="ascii")


def stage_main(name: str, target: str, config: Any, control: str, log_level: int) -> None:
    """Process entry point (spawned by the Supervisor)."""
    logging.basicConfig(
        level=log_level, format=f"%(asctime)s %(levelname)s [{name}] %(name)s: %(message)s"
    )
    _set_process_name(f"pivh-{name}")
    parent = os.getppid()
    stopping = False

    def on_term(signum: int, frame: Any) -> None:
        nonlocal stopping
        if stopping:  # a second request: stop now, even inside a blocking call
            raise SystemExit(0)
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    # Ctrl-C reaches the whole process group; only the supervisor decides the order.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def stop() -> bool:
        # A supervisor killed with SIGKILL leaves us re-parented: do not linger as an orphan.
        return stopping or os.getppid() != parent

    beat = Heartbeat(name, control, getattr(config, "heartbeat_s", 1.0))
    try:
        code = int(resolve(target)(config, stop, beat) or 0)
    finally:
        beat.close()
    sys.exit(code)


def run_capture(config: CaptureConfig, stop: Stop, beat: Heartbeat) -> int:
    """Capture loop; returns 0 when a finite source ends or on stop."""
    from pivh_live.pipeline.stages import RegionStage
    from pivh_live.sources import SourceStatus, open_resilient
    from pivh_live.transport import FramePublisher, ReliablePusher, TransportError

    ep = config.endpoints
    source = open_resilient(config.source, stall_s=config.stall_s)
    region = RegionStage(
        roi=config.roi, profile=config.profile, auto=config.auto_roi, background=True
    )
    n = {"frames": 0, "sent": 0, "record_dropped": 0}
    state = {"source_state": "unknown", "source_message": ""}
    record_warned = False

    def info() -> dict[str, Any]:
        roi = region.roi
        return {
            **n,
            **state,
            "no_roi": region.skipped,
            "publish_dropped": pub.counters.dropped,
            "roi": None if roi is None else [roi.x, roi.y, roi.w, roi.h],
        }

    with contextlib.ExitStack() as stack:
        stack.callback(source.close)
        stack.callback(region.close)
        pub = stack.enter_context(FramePublisher(ep.frames, name="capture"))
        push = None
        if config.record:
            push = stack.enter_context(ReliablePusher(ep.record, name="capture", send_timeout_ms=0))
        beat.send(**info())
        settle_heap()
        while not stop():
            item = source.read()
            if item is None:
                state = {"source_state": "ended", "source_message": "the source ended"}
                beat.send(**info())
                return 0
            if isinstance(item, SourceStatus):
                state = {"source_state": item.state, "source_message": item.message}
                beat.send(**info())
                continue
            n["frames"] += 1
            rf = region.process(item)
            if rf is not None:
                msg = region_to_message(rf)
                pub.send(msg)
                n["sent"] += 1
                if push is not None:
                    try:
                        push.send(msg)
                    except TransportError:
                        n["record_dropped"] += 1
                        if not record_warned:
                            log.warning("recorder is not taking frames; dropping and counting")
                            record_warned = True
            beat.maybe(info)
    return 0


def build_engine(config: InferenceConfig) -> Any:
    for module in config.plugins:
        importlib.import_module(module)
    if config.engine_factory:
        return resolve(config.engine_factory)()
    from pivh_live.bundle import default_bundle_path, load_bundle
    from pivh_live.engines import create_engine

    bundle = load_bundle(config.model or default_bundle_path())
    return create_engine(config.engine, bundle, **config.engine_options)


def run_inference(config: InferenceConfig, stop: Stop, beat: Heartbeat) -> int:
    """Inference loop: newest frame in, result out; returns 0 on stop."""
    from pivh_live.pipeline.stages import InferenceStage
    from pivh_live.transport import FramePublisher, LatestSubscriber, TransportError

    ep = config.endpoints
    engine = build_engine(config)
    stage = InferenceStage(engine)
    n = {"results": 0, "malformed": 0}
    last_seq = [-1]

    def info() -> dict[str, Any]:
        return {
            **n,
            "received": sub.counters.received,
            "dropped": sub.counters.dropped,
            "publish_dropped": pub.counters.dropped,
            "last_seq": last_seq[0],
        }

    with (
        engine,
        LatestSubscriber(ep.frames, name="infer") as sub,
        FramePublisher(ep.results, name="result") as pub,
    ):
        beat.send(**info())
        settle_heap()
        while not stop():
            msg = sub.recv_latest(timeout_ms=100)
            if msg is not None:
                try:
                    region = region_from_message(msg)
                except TransportError as exc:
                    n["malformed"] += 1
                    log.warning("skipped a bad frame message: %s", exc)
                    continue
                pub.send(result_to_message(stage.process(region)))
                n["results"] += 1
                last_seq[0] = region.seq
            beat.maybe(info)
    return 0
