"""Running the live system: multi-process (supervised stages) or single-process.

`run_live` starts capture and inference as supervised processes and hosts
the consumers in this process (``pivh-live run``). `run_single` runs the same
stages in one loop (``--single-process``, the benchmark baseline).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pivh_live.errors import PivhError
from pivh_live.pipeline.config import CaptureConfig, Endpoints, InferenceConfig, LiveConfig
from pivh_live.pipeline.host import ConsumerHost, HostStats
from pivh_live.pipeline.results import ResultConsumer
from pivh_live.pipeline.supervisor import StageSpec, Supervisor
from pivh_live.realtime import settle_heap

log = logging.getLogger(__name__)

CAPTURE_TARGET = "pivh_live.pipeline.processes:run_capture"
INFERENCE_TARGET = "pivh_live.pipeline.processes:run_inference"


@dataclass(frozen=True)
class LiveReport:
    """How a live run ended: results received, seconds, stage restarts, host counts."""

    results: int
    seconds: float
    restarts: int
    host: HostStats | None
    reason: str


def inference_config(config: LiveConfig, endpoints: Endpoints) -> InferenceConfig:
    return InferenceConfig(
        endpoints=endpoints,
        model=config.model,
        engine=config.engine,
        engine_options=dict(config.engine_options),
        engine_factory=config.engine_factory,
        plugins=config.plugins,
    )


def stage_specs(config: LiveConfig, endpoints: Endpoints) -> list[StageSpec]:
    capture = CaptureConfig(
        endpoints=endpoints,
        source=config.source,
        roi=config.roi,
        profile=config.profile,
        auto_roi=config.auto_roi,
        record=config.record,
        stall_s=config.stall_s,
    )
    return [
        StageSpec("capture", CAPTURE_TARGET, capture),
        StageSpec("inference", INFERENCE_TARGET, inference_config(config, endpoints)),
    ]


def run_live(
    config: LiveConfig,
    consumers: Sequence[ResultConsumer],
    *,
    duration_s: float | None = None,
    stop: Callable[[], bool] | None = None,
    on_tick: Callable[[Supervisor, ConsumerHost], None] | None = None,
) -> LiveReport:
    """Supervise capture + inference and feed ``consumers`` until stop, duration or the end.

    The run ends when ``stop()`` is true, ``duration_s`` has passed, a stage
    has failed for good (`PivhError`), or capture has finished (a finite
    file) and no result came for ``config.drain_s``. ``on_tick`` is called
    every loop (monitoring, tests). Everything is stopped on the way out,
    also on an exception or Ctrl-C.
    """
    endpoints = Endpoints.for_run(config.run_id, config.runtime_base)
    for consumer in consumers:
        # A consumer that reads sockets itself (a recorder on ``record``) learns where they are.
        attach = getattr(consumer, "attach", None)
        if attach is not None:
            attach(endpoints)
    try:
        return _supervise(config, endpoints, consumers, duration_s, stop, on_tick)
    finally:
        endpoints.remove_files()


def _supervise(
    config: LiveConfig,
    endpoints: Endpoints,
    consumers: Sequence[ResultConsumer],
    duration_s: float | None,
    stop: Callable[[], bool] | None,
    on_tick: Callable[[Supervisor, ConsumerHost], None] | None,
) -> LiveReport:
    start = time.monotonic()
    last_result = start
    reason = "stopped"
    # The host (and so the consumers) closes after the stages stop, so the
    # recorder takes the last frames instead of the capture stage dropping them.
    with (
        ConsumerHost(endpoints, consumers, name="host", subscribe_status=False) as host,
        Supervisor(stage_specs(config, endpoints), endpoints, log_level=config.log_level) as sup,
    ):
        sup.start()
        settle_heap()
        while True:
            if host.poll(timeout_ms=50):
                last_result = time.monotonic()
            host.dispatch_status(sup.poll())
            if on_tick is not None:
                on_tick(sup, host)
            now = time.monotonic()
            if stop is not None and stop():
                break
            if duration_s is not None and now - start >= duration_s:
                reason = "duration"
                break
            if sup.failed:
                raise PivhError(
                    f"the {', '.join(sup.failed)} stage failed repeatedly at start; "
                    "run with --single-process -v to see why"
                )
            if sup.stage_state("capture") == "finished" and now - last_result >= config.drain_s:
                reason = "source ended"
                break
        stats = host.stats
        restarts = sup.restarts("capture") + sup.restarts("inference")
    return LiveReport(stats.results, time.monotonic() - start, restarts, stats, reason)


def run_single(
    config: LiveConfig,
    consumers: Sequence[ResultConsumer],
    *,
    duration_s: float | None = None,
    stop: Callable[[], bool] | None = None,
) -> LiveReport:
    """The same stages in one loop, on capture time (``pivh-live run --single-process``)."""
    from pivh_live.pipeline.processes import build_engine
    from pivh_live.pipeline.single import SinglePipeline
    from pivh_live.pipeline.stages import InferenceStage, RegionStage
    from pivh_live.sources import open_resilient

    # One process: no sockets, so the endpoints are never used.
    engine_config = inference_config(config, Endpoints(*(["inproc://unused"] * 5)))
    source = open_resilient(config.source, stall_s=config.stall_s)
    region = RegionStage(
        roi=config.roi, profile=config.profile, auto=config.auto_roi, background=True
    )
    with build_engine(engine_config) as engine:
        pipeline = SinglePipeline(region, InferenceStage(engine), consumers)
        settle_heap()
        try:
            stats = pipeline.run(source, duration_s=duration_s, stop=stop)
        finally:
            source.close()
            region.close()
            pipeline.close()
    if stop is not None and stop():
        reason = "stopped"
    elif duration_s is not None and stats.seconds >= duration_s:
        reason = "duration"
    else:
        reason = "source ended"
    return LiveReport(stats.results, stats.seconds, 0, None, reason)
