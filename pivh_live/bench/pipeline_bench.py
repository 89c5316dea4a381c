"""The live pipeline under measurement: single-process or supervised processes, 1..N instances.

One instance = the pipeline of ``pivh-live run`` (RegionStage ->
InferenceStage -> consumers) fed by a paced source, with a `StampingConsumer`
that renders the overlay (`OverlayStage`) for every result and stamps
``overlay``, plus optional display and recorder consumers. Single-process
mode reads the in-memory clip (`LoopedClipSource`) directly; multi-process
mode gives the capture process the clip as a BMP folder (`file:` spec), since
stage processes open their source by spec. Several instances run as
separate processes (spawn) started together.

Only numpy, OpenCV and the engine are imported for single-process mode, so
it runs where PyAV and pyzmq are not installed (the GPU machine).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pivh_live.bench.clip import (
    ScreenClip,
    cached_screen_clip,
    default_cache_dir,
    write_image_folder,
)
from pivh_live.bench.timing import Record, SeqTimes, StampTable
from pivh_live.errors import ConfigError, PivhError
from pivh_live.frames import Roi
from pivh_live.pipeline.results import BaseConsumer, FrameResult, PipelineStatus, RegionFrame

log = logging.getLogger(__name__)

STARTUP_TIMEOUT_S = 90.0


@dataclass(frozen=True)
class BenchConfig:
    """What one pipeline benchmark runs (see ``pivh-live bench --help``).

    ``source`` None: the phantom screen clip (``resolution``, ``clip_frames``,
    ``seed``, ``grade``) in memory. ``roi``: "auto" (detection on a worker
    thread, as ``pivh-live run`` does), "inline" (detection on every frame,
    on the frame path; single process only), "known" (the clip's true
    region, as a saved scanner profile gives it) or "x,y,w,h".
    """

    source: str | None = None
    fps: float = 60.0
    resolution: tuple[int, int] = (1920, 1080)
    duration_s: float | None = 20.0
    frames: int | None = None
    display: bool = False
    record: bool = False
    single_process: bool = False
    instances: int = 1
    engine: str = "onnxruntime"
    engine_options: dict[str, Any] = field(default_factory=dict)
    engine_factory: str | None = None  # "module:function" -> Engine (tests, plugins)
    model: Path | None = None
    roi: str = "auto"
    detect_every: int = 4  # --roi auto, single process: frames between detector hand-offs
    clip_frames: int = 60
    seed: int = 0
    grade: int = 3
    trim: int = 10
    out: Path = Path("bench-out")
    cache_dir: Path | None = None
    instance: int = 0


class Progress:
    """A results counter shared with the parent (a multiprocessing Value or this)."""

    def __init__(self) -> None:
        self.value = 0


class StampingConsumer(BaseConsumer):
    """Renders the overlay for each result, stamps ``overlay`` (and each hand-off), keeps it.

    ``handoffs`` are (name, consumer) pairs called after the overlay; each
    adds stamp ``name`` when its ``on_result`` returns.
    """

    needs_frames = True

    def __init__(
        self,
        overlay: Any,
        handoffs: Sequence[tuple[str, Any]] = (),
        progress: Any = None,
        clock: Callable[[], int] = time.monotonic_ns,
        capacity: int = 4096,
    ) -> None:
        self.overlay = overlay
        self.handoffs = list(handoffs)
        self.progress = progress
        self._clock = clock
        self.table = StampTable(capacity)
        self.no_region = 0
        self.first_ns: int | None = None

    def on_result(self, region: RegionFrame | None, result: FrameResult) -> None:
        if region is None:
            self.no_region += 1  # multi-process: no frame reached this host yet
            return
        self.overlay.render(region, result)
        stamps = dict(result.stamps)
        stamps["overlay"] = self._clock()
        for name, consumer in self.handoffs:
            consumer.on_result(region, result)
            stamps[name] = self._clock()
        self.table.add(result.seq, stamps)
        if self.first_ns is None:
            self.first_ns = stamps["overlay"]
        if self.progress is not None:
            self.progress.value += 1

    def on_status(self, status: PipelineStatus) -> None:
        for _, consumer in self.handoffs:
            consumer.on_status(status)

    def attach(self, endpoints: Any) -> None:
        """`run_live` attaches the top-level consumers; a recorder inside needs it too."""
        for _, consumer in self.handoffs:
            attach = getattr(consumer, "attach", None)
            if attach is not None:
                attach(endpoints)

    def recorder_counters(self) -> dict[str, Any]:
        """The recorder's own counts (after close): frames written, gaps, write times."""
        for name, consumer in self.handoffs:
            if name == "record":
                st, wt = consumer.status(), consumer.write_times()
                return {"record_frames": st.frames, "record_missed": st.missed,
                        "record_queue_dropped": st.queue_dropped,
                        "record_write_p50_ms": wt.p50_ms, "record_write_p99_ms": wt.p99_ms,
                        "record_write_max_ms": wt.max_ms, "record_warning": st.warning}  # fmt: skip
        return {}

    def close(self) -> None:
        for _, consumer in self.handoffs:
            consumer.close()


class DisplayClient:
    """Stands in for a browser on the web display: fetches every new JPEG as soon as it exists.

    Records when the JPEG of each image ``seq`` was ready (the display
    hand-off: what a browser would receive next), in its own thread as the
    web server's worker does.
    """

    def __init__(
        self, hub: Any, clock: Callable[[], int] = time.monotonic_ns, capacity: int = 4096
    ) -> None:
        self.hub = hub
        self.ready = SeqTimes(capacity)
        self._clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-display", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        version = 0
        while not self._stop.is_set() and not self.hub.closed:
            new = self.hub.wait(version, 0.2)
            if new == version:
                continue
            version = new
            frame = self.hub.jpeg()
            if frame is not None:
                self.ready.add(int(frame.seq), self._clock())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)


def _display(engine_name: str, model_version: str, capacity: int) -> tuple[Any, DisplayClient]:
    try:
        from pivh_live.web.live import FrameHub, LiveDisplay
    except ImportError as exc:
        raise ConfigError(
            f"the web display cannot be loaded here ({exc}); run the benchmark with --headless"
        ) from None
    hub = FrameHub(engine=engine_name, model_version=model_version)
    return LiveDisplay(hub), DisplayClient(hub, capacity=capacity)


def _recorder(out: Path, engine_name: str, model: tuple[str, str], fps: float) -> Any:
    """The session recorder (H.264 region video, journal), into a throw-away store under out."""
    try:
        from pivh_live.recording import SessionStore
        from pivh_live.recording.recorder import Recorder
        from pivh_live.recording.store import SessionMeta
    except ImportError as exc:
        raise ConfigError(
            f"the recorder cannot be loaded here ({exc}); run the benchmark without --record"
        ) from None
    meta = SessionMeta("phantom", model_name=model[0], model_version=model[1], engine=engine_name,
                       fps=fps or None)  # fmt: skip
    return Recorder(meta, SessionStore(out / "store"), retention=None, min_free_bytes=0)


def resolve_roi(config: BenchConfig, clip: ScreenClip | None) -> Roi | None:
    """The fixed ROI for ``config.roi`` (None: auto-detect)."""
    from pivh_live.region import parse_roi

    if config.roi in ("auto", "inline"):
        return None
    if config.roi == "known":
        if clip is None:
            raise ConfigError("--roi known needs the phantom clip; give --roi x,y,w,h instead")
        return clip.roi
    return parse_roi(config.roi)


def load_clip(config: BenchConfig) -> ScreenClip | None:
    if config.source is not None:
        return None
    w, h = config.resolution
    return cached_screen_clip(w, h, config.clip_frames, config.seed, config.grade,
                              config.cache_dir)  # fmt: skip


def make_engine(config: BenchConfig) -> Any:
    from pivh_live.bundle import default_bundle_path, load_bundle
    from pivh_live.engines import create_engine

    if config.engine_factory:
        import importlib

        module, _, name = config.engine_factory.partition(":")
        return getattr(importlib.import_module(module), name)()
    bundle = load_bundle(config.model or default_bundle_path())
    return create_engine(config.engine, bundle, **config.engine_options)


def _consumers(
    config: BenchConfig,
    engine_name: str,
    model: tuple[str, str],
    smoothing: Any,
    progress: Any,
    fit: str = "letterbox",
) -> tuple[StampingConsumer, DisplayClient | None]:
    from pivh_live.overlay import OverlaySettings
    from pivh_live.pipeline.stages import OverlayStage

    handoffs: list[tuple[str, Any]] = []
    client = None
    if config.display:
        display, client = _display(engine_name, model[1], expected_frames(config))
        handoffs.append(("display.handoff", display))
    if config.record:
        out = config.out / f"recording{config.instance}"
        handoffs.append(("record", _recorder(out, engine_name, model, config.fps)))
    overlay = OverlayStage(OverlaySettings.from_smoothing(smoothing, fit=fit))
    return StampingConsumer(overlay, handoffs, progress, capacity=expected_frames(config)), client


def expected_frames(config: BenchConfig) -> int:
    """Rows to preallocate for the stamps: the whole run where its length is known."""
    if config.frames is not None:
        return config.frames + 16
    if config.duration_s is not None and config.fps > 0:
        return int(config.duration_s * config.fps * 1.1) + 64
    return 8192


def _merge_display(records: list[Record], client: DisplayClient | None) -> list[Record]:
    if client is None:
        return records
    return [(seq, {**s, "display": client.ready[seq]} if seq in client.ready else s)
            for seq, s in records]  # fmt: skip


def run_single_instance(
    config: BenchConfig, clip: ScreenClip | None, progress: Any = None
) -> dict[str, Any]:
    """One single-process pipeline on the clip (or ``config.source``); records + counters."""
    from pivh_live.bench.clip import LoopedClipSource
    from pivh_live.pipeline.single import SinglePipeline
    from pivh_live.pipeline.stages import InferenceStage, RegionStage
    from pivh_live.realtime import settle_heap
    from pivh_live.region import BackgroundRegionDetector, RegionDetector
    from pivh_live.sources import open_source

    roi = resolve_roi(config, clip)
    source = LoopedClipSource(clip.frames, config.fps) if clip is not None else None
    if source is None:
        assert config.source is not None
        source = open_source(config.source)
    with make_engine(config) as engine:
        inference = InferenceStage(engine)
        model = (engine.bundle.name, engine.bundle.version)
        consumer, client = _consumers(
            config, engine.name, model, inference.config, progress, engine.bundle.fit
        )
        detector: RegionDetector | BackgroundRegionDetector | None = None
        if roi is None:
            inline = config.roi == "inline"
            detector = (
                RegionDetector() if inline else BackgroundRegionDetector(every=config.detect_every)
            )
        region = RegionStage(roi=roi, auto=roi is None, detector=detector)
        pipeline = SinglePipeline(region, inference, [consumer])
        if client is not None:
            client.start()
        settle_heap()
        try:
            stats = pipeline.run(source, max_frames=config.frames, duration_s=config.duration_s)
        finally:
            source.close()
            pipeline.close()
            region.close()
            if client is not None:
                client.stop()
    records = _merge_display(consumer.table.records(), client)
    return {
        "mode": "single-process",
        "model": f"{engine.bundle.name} {engine.bundle.version}",
        "engine": engine.name,
        "records": records,
        "pids": {os.getpid(): f"pipeline{config.instance} (single process)"},
        "counters": {
            "source_frames": stats.frames,
            "source_dropped": int(source.stats.dropped),
            "no_roi": region.skipped,
            "results": stats.results,
            "inference_dropped": 0,  # one loop scores every delivered frame
            "consumer_dropped": 0,
            "no_region": consumer.no_region,
            "display_encoded": len(client.ready) if client is not None else None,
            **consumer.recorder_counters(),
        },
        "seconds": stats.seconds,
    }


def multi_process_source(config: BenchConfig, clip: ScreenClip | None) -> str:
    """A spec the capture process can open: the clip as a looping BMP folder."""
    if clip is None:
        assert config.source is not None
        return config.source
    w, h = clip.resolution
    folder = (config.cache_dir or default_cache_dir()) / (
        f"bmp-{w}x{h}-n{len(clip.frames)}-s{clip.seed}-g{clip.grade}"
    )
    write_image_folder(clip, folder, config.fps if config.fps > 0 else 60.0)
    pace = "realtime" if config.fps > 0 else "fast"
    return f"file:{folder}?loop=1&pace={pace}"


def run_multi_instance(
    config: BenchConfig, clip: ScreenClip | None, progress: Any = None
) -> dict[str, Any]:
    """Capture and inference as supervised processes (`run_live`), consumers in this process."""
    from pivh_live.bundle import default_bundle_path, load_bundle
    from pivh_live.pipeline.config import LiveConfig
    from pivh_live.pipeline.live import run_live
    from pivh_live.smoothing import SmoothingConfig

    if config.roi == "inline":
        raise ConfigError("--roi inline (detection on the frame path) needs --single-process")
    roi = resolve_roi(config, clip)
    if config.engine_factory:
        with make_engine(config) as probe:  # the factory's bundle gives the thresholds
            bundle = probe.bundle
    else:
        bundle = load_bundle(config.model or default_bundle_path())
    t = bundle.thresholds
    smoothing = SmoothingConfig.from_thresholds(t["pivh"], t["severe"], t["valid"])
    model = (bundle.name, bundle.version)
    consumer, client = _consumers(config, config.engine, model, smoothing, progress, bundle.fit)
    live = LiveConfig(
        source=multi_process_source(config, clip),
        model=None if config.engine_factory else bundle.path,
        engine=config.engine,
        engine_options=dict(config.engine_options),
        engine_factory=config.engine_factory,
        roi=roi,
        auto_roi=roi is None,
        record=config.record,
        run_id=f"bench{os.getpid()}-{config.instance}",
        log_level=logging.getLogger().getEffectiveLevel(),
    )
    seen: dict[str, Any] = {"pids": {}, "counters": {}}
    started = time.monotonic()

    def on_tick(sup: Any, host: Any) -> None:
        capture = sup.stage_info("capture") or {}
        inference = sup.stage_info("inference") or {}
        for role, info in (("capture", capture), ("inference", inference)):
            if "pid" in info:
                seen["pids"][int(info["pid"])] = f"{role}{config.instance}"
        s = host.stats
        seen["counters"] = {
            "source_frames": int(capture.get("frames", 0)),
            "no_roi": int(capture.get("no_roi", 0)),
            "results": s.results,
            "inference_dropped": int(inference.get("dropped", 0)),
            "consumer_dropped": s.dropped,
            "unseen": s.gaps,
            "record_dropped": int(capture.get("record_dropped", 0)),
        }

    def stop() -> bool:
        if consumer.first_ns is None:
            if time.monotonic() - started > STARTUP_TIMEOUT_S:
                raise PivhError(
                    f"no result within {STARTUP_TIMEOUT_S:.0f} s of starting the "
                    "pipeline; run `pivh-live run --single-process -v` to see why"
                )
            return False
        if config.frames is not None and len(consumer.table) >= config.frames:
            return True
        elapsed = (time.monotonic_ns() - consumer.first_ns) / 1e9
        return config.duration_s is not None and elapsed >= config.duration_s

    if client is not None:
        client.start()
    try:
        report = run_live(live, [consumer], stop=stop, on_tick=on_tick)
    finally:
        consumer.close()
        if client is not None:
            client.stop()
    counters = {**seen["counters"], "no_region": consumer.no_region,
                "display_encoded": len(client.ready) if client is not None else None,
                "restarts": report.restarts, **consumer.recorder_counters()}  # fmt: skip
    seen["pids"][os.getpid()] = f"host{config.instance} (consumers)"
    return {
        "mode": "multi-process",
        "model": f"{bundle.name} {bundle.version}",
        "engine": config.engine_factory or config.engine,
        "records": _merge_display(consumer.table.records(), client),
        "pids": seen["pids"],
        "counters": counters,
        "seconds": report.seconds,
    }


def run_instance(config: BenchConfig, progress: Any = None) -> dict[str, Any]:
    clip = load_clip(config)
    if config.single_process:
        return run_single_instance(config, clip, progress)
    return run_multi_instance(config, clip, progress)


def _instance_main(config: BenchConfig, progress: Any, queue: Any) -> None:
    """Entry point of one instance process: its result (or its error) goes on ``queue``."""
    logging.basicConfig(level=logging.WARNING)
    try:
        queue.put((config.instance, run_instance(config, progress), None))
    except Exception as exc:  # reported by the parent
        queue.put((config.instance, None, f"{type(exc).__name__}: {exc}"))


def run_instances(
    config: BenchConfig, on_progress: Callable[[int], None] | None = None
) -> list[dict[str, Any]]:
    """``config.instances`` pipelines at once; one in this process, more as spawned processes.

    ``on_progress(results so far)`` is called about 4 times a second.
    """
    if not config.single_process and config.source is None:
        # Written once here, so instance processes never list a half-written folder.
        multi_process_source(config, load_clip(config))
    if config.instances == 1:
        progress = Progress()
        done = threading.Event()
        watcher = threading.Thread(
            target=_watch, args=(lambda: progress.value, done, on_progress), daemon=True
        )
        watcher.start()
        try:
            return [run_instance(config, progress)]
        finally:
            done.set()
            watcher.join(timeout=2.0)
    return _spawn_instances(config, on_progress)


def _watch(
    count: Callable[[], int], done: threading.Event, on_progress: Callable[[int], None] | None
) -> None:
    while not done.wait(0.25):
        if on_progress is not None:
            on_progress(count())


def _spawn_instances(
    config: BenchConfig, on_progress: Callable[[int], None] | None
) -> list[dict[str, Any]]:
    import multiprocessing as mp
    import queue as queue_mod

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    counters = [ctx.Value("q", 0, lock=False) for _ in range(config.instances)]
    procs = [
        ctx.Process(target=_instance_main, args=(replace(config, instance=i), counters[i], q),
                    name=f"bench-instance{i}", daemon=False)
        for i in range(config.instances)
    ]  # fmt: skip
    for p in procs:
        p.start()
    results: dict[int, dict[str, Any]] = {}
    errors: list[str] = []
    try:
        while len(results) + len(errors) < len(procs):
            try:
                index, result, error = q.get(timeout=0.25)
            except queue_mod.Empty:
                if not any(p.is_alive() for p in procs):
                    errors.append("an instance process died without a result")
                    break
            else:
                if error is not None:
                    errors.append(f"instance {index}: {error}")
                else:
                    result["pids"][procs[index].pid] = result["pids"].get(
                        procs[index].pid, f"instance{index}"
                    )
                    results[index] = result
            if on_progress is not None:
                on_progress(sum(int(c.value) for c in counters))
    finally:
        for p in procs:
            p.join(timeout=10.0)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5.0)
    if errors:
        raise PivhError("; ".join(errors))
    return [results[i] for i in sorted(results)]
