"""One benchmark run, every part in order: engine floor, naive loop, pipeline; then bench.json.

    report = run_bench(BenchConfig(fps=60, duration_s=30), mode="all")

The parts run one after another on the same frames (the phantom screen
clip, or ``config.source``), under one `ResourceSampler`; each part's CPU and
memory figures cover the span from its first capture to its last overlay.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import datetime, timezone
from typing import Any

from pivh_live.bench.baselines import clip_regions, engine_floor, run_naive
from pivh_live.bench.clip import LoopedClipSource, ScreenClip, clip_info
from pivh_live.bench.machine import machine_info
from pivh_live.bench.pipeline_bench import (
    BenchConfig,
    load_clip,
    make_engine,
    resolve_roi,
    run_instances,
)
from pivh_live.bench.report import (
    SCHEMA,
    aggregate,
    check_targets,
    holoscan_x86_check,
    ratios,
    run_summary,
    write_frames_csv,
    write_json,
)
from pivh_live.bench.resources import ResourceSampler, loadavg, series
from pivh_live.bench.timing import BRANCH_MEANING, STAGE_MEANING, Record, trimmed

log = logging.getLogger(__name__)

MODES = ("all", "pipeline", "naive", "engine")
DEFAULT_ENGINE_CALLS = 1000


class _Bar:
    """tqdm if installed (it is a dependency, but the GPU machine may lack it), else nothing."""

    def __init__(self, desc: str, total: int | None, enabled: bool) -> None:
        self._bar = None
        if enabled:
            try:
                from tqdm import tqdm

                self._bar = tqdm(total=total, desc=desc, unit="frame", file=sys.stderr,
                                 leave=False, mininterval=0.5)  # fmt: skip
            except ImportError:
                pass

    def set(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _total(config: BenchConfig) -> int | None:
    if config.frames is not None:
        return config.frames
    if config.duration_s is not None and config.fps > 0:
        return int(config.duration_s * config.fps)
    return None


def _window(records: Sequence[Record]) -> tuple[int, int] | None:
    if not records:
        return None
    return (min(s["capture"] for _, s in records), max(s["overlay"] for _, s in records))


def _run_naive(config: BenchConfig, engine: Any, clip: ScreenClip | None,
               progress: bool) -> tuple[list[Record], dict[str, Any]]:  # fmt: skip
    from pivh_live.frames import Roi
    from pivh_live.sources import open_source

    roi = resolve_roi(config, clip) or (clip.roi if clip is not None else None)
    if clip is not None:
        source: Any = LoopedClipSource(clip.frames, config.fps)
    else:
        assert config.source is not None
        source = open_source(config.source)
    if roi is None:  # a user source without --roi: the naive user resizes the whole frame
        w, h = source.info.width, source.info.height
        roi = Roi(0, 0, w or 1 << 15, h or 1 << 15)
    bar = _Bar("naive loop", _total(config), progress)
    count = [0]

    def tick() -> None:
        count[0] += 1
        if count[0] % 30 == 0:
            bar.set(count[0])

    try:
        with source:
            return run_naive(engine, source, roi, max_frames=config.frames,
                             duration_s=config.duration_s, progress=tick)  # fmt: skip
    finally:
        bar.close()


def run_bench(
    config: BenchConfig,
    mode: str = "all",
    *,
    soak: bool = False,
    argv: Sequence[str] = (),
    progress: bool = True,
    engine_calls: int | None = None,
    plots: bool = True,
    emit: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the parts ``mode`` asks for, write ``config.out``/bench.json (+ CSV, plots)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    say = emit or log.info
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "tool": "pivh-live bench",
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "argv": list(argv),
        "mode": mode,
        "soak": None,
        "machine": None,  # filled in after the runs: it imports torch, which is large
        "load": {"loadavg_before": loadavg()},
        "config": {
            k: (str(v) if not isinstance(v, (int, float, bool, type(None), tuple, dict)) else v)
            for k, v in asdict(config).items()
        },
        "warnings": [],
        "resources": {},
        "stamp_meaning": {**STAGE_MEANING, **BRANCH_MEANING},
    }
    if not (config.display or config.record):
        report["warnings"].append("headless: no display or recorder consumer was run")
    clip = load_clip(config)
    report["source"] = clip_info(clip) if clip is not None else {"spec": config.source}
    runs: list[tuple[str, list[Record]]] = []
    windows: dict[str, tuple[int, int] | None] = {}
    labels: dict[str, dict[int, str]] = {}
    interval = 1.0 if soak else 0.5
    with ResourceSampler(interval) as sampler:
        if mode in ("all", "engine", "naive"):
            with make_engine(config) as engine:
                report["model"] = f"{engine.bundle.name} {engine.bundle.version}"
                report["engine"] = engine.name
                if mode in ("all", "engine"):
                    say("engine floor: timing the bare engine loop")
                    roi = resolve_roi(config, clip) or (clip.roi if clip is not None else None)
                    regions = _floor_regions(clip, roi, config.seed)
                    report["engine_loop"] = engine_floor(
                        engine, regions, n=engine_calls or DEFAULT_ENGINE_CALLS
                    )
                if mode in ("all", "naive"):
                    say(f"naive OpenCV loop at {config.fps:g} fps")
                    recs, counters = _run_naive(config, engine, clip, progress)
                    report["naive"] = run_summary(recs, counters, config.fps, config.trim)
                    kept = trimmed(recs, config.trim)
                    runs.append(("naive loop", kept))
                    windows["naive"] = _window(kept)
                    labels["naive"] = {os.getpid(): "naive loop (this process)"}
        if mode in ("all", "pipeline"):
            labels["pipeline"] = _pipeline_part(config, report, runs, windows, progress, say)
    for part, win in windows.items():
        if win is not None:
            report["resources"][part] = sampler.summary(win[0], win[1], labels.get(part))
    report["load"]["loadavg_after"] = loadavg()
    report["machine"] = machine_info()
    _compare(report, config)
    span = windows.get("pipeline")
    resource_series = series(
        sampler.samples, labels.get("pipeline"), *(span if span is not None else (None, None))
    )
    if soak:
        from pivh_live.bench.soak import soak_summary

        report["soak"] = soak_summary([r for r in runs if r[0] != "naive loop"], resource_series)
    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    if runs:
        write_frames_csv(out / "frames.csv", runs)
    if plots:
        from pivh_live.bench.plots import write_plots

        report["plots"] = write_plots(out, report, runs, resource_series)
        if not report["plots"] and runs:
            report["warnings"].append("no plots: matplotlib is not installed")
    write_json(out / "bench.json", report)
    return report


def _floor_regions(clip: ScreenClip | None, roi: Any, seed: int) -> list[Any]:
    if clip is not None and roi is not None:
        return clip_regions(clip.frames, roi)
    from pivh_live.bench.engine_loop import phantom_regions

    return phantom_regions(seed, n=16)


def _pipeline_part(
    config: BenchConfig,
    report: dict[str, Any],
    runs: list[tuple[str, list[Record]]],
    windows: dict[str, tuple[int, int] | None],
    progress: bool,
    say: Callable[[str], None],
) -> dict[int, str]:
    """Run the pipeline instances into ``report``; the role of each process by pid."""
    kind = "single-process" if config.single_process else "multi-process"
    say(f"pipeline ({kind}, {config.instances} instance(s)) at {config.fps:g} fps")
    total = _total(config)
    bar = _Bar("pipeline", total * config.instances if total else None, progress)
    t0 = time.monotonic()
    try:
        results = run_instances(config, on_progress=bar.set)
    finally:
        bar.close()
    summaries, kept_runs, labels = [], [], {}
    for i, r in enumerate(results):
        if len(r["records"]) <= 2 * config.trim:
            raise_short(len(r["records"]), config)
        summaries.append(run_summary(r["records"], r["counters"], config.fps, config.trim))
        kept = trimmed(r["records"], config.trim)
        kept_runs.append(r["records"])
        runs.append((f"pipeline {i}" if len(results) > 1 else "pipeline", kept))
        labels.update(r["pids"])
    labels.setdefault(os.getpid(), "bench (this process)")
    report.setdefault("model", results[0]["model"])
    report.setdefault("engine", results[0]["engine"])
    report["pipeline"] = {
        "mode": kind,
        "seconds": round(time.monotonic() - t0, 2),
        "instances": summaries,
        "aggregate": aggregate(summaries, kept_runs, config.trim),
    }
    spans = [w for _, recs in runs[-len(results) :] if (w := _window(recs)) is not None]
    windows["pipeline"] = (min(w[0] for w in spans), max(w[1] for w in spans)) if spans else None
    return labels


def raise_short(n: int, config: BenchConfig) -> None:
    from pivh_live.errors import PivhError

    raise PivhError(
        f"only {n} results: need more than {2 * config.trim} to leave out the first "
        f"and last {config.trim}; run longer (--duration or --frames)"
    )


def _compare(report: dict[str, Any], config: BenchConfig) -> None:
    if "pipeline" not in report:
        return
    e2e = report["pipeline"]["aggregate"]["end_to_end_ms"]
    report["ratios"] = {}
    if "engine_loop" in report:
        report["ratios"]["pipeline_vs_engine"] = ratios(e2e, report["engine_loop"]["latency_ms"])
    if "naive" in report:
        report["ratios"]["pipeline_vs_naive"] = ratios(e2e, report["naive"]["end_to_end_ms"])
    report["targets"] = check_targets(
        report["pipeline"]["aggregate"], report.get("engine_loop"), config.fps
    )
    report["holoscan_x86_check"] = holoscan_x86_check(e2e)
