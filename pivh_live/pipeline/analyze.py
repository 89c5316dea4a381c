"""Offline analysis of recorded clips with the live pipeline's own code path.

Each input goes through `SinglePipeline` (RegionStage -> InferenceStage ->
consumers) with pacing off and the smoother fed media time, so the result is
what the live display would have shown if the clip had been played to it.
Writes OUT/frames.jsonl and OUT/summary.json (schema in docs/analyze.md,
a public interface), optionally OUT/overlay.mp4; several inputs go to
OUT/<stem>/ each plus OUT/index.json.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pivh_live import DISCLAIMER, __version__
from pivh_live.errors import PivhError
from pivh_live.frames import Roi
from pivh_live.pipeline.consumers import FRAMES_FILE, JsonlResultWriter, OverlayVideoWriter
from pivh_live.pipeline.results import BaseConsumer, FrameResult, RegionFrame, ResultConsumer
from pivh_live.pipeline.single import SinglePipeline
from pivh_live.pipeline.stages import InferenceStage, RegionStage, smoothing_config
from pivh_live.sources import redact

log = logging.getLogger(__name__)

SCHEMA = "pivh-live-analyze/1"
SUMMARY_FILE = "summary.json"
INDEX_FILE = "index.json"
OVERLAY_FILE = "overlay.mp4"


@dataclass(frozen=True)
class AnalyzeOptions:
    """``roi`` crops every frame (None: the whole frame, or detection with ``auto_roi``)."""

    model: Path | None = None
    engine: str = "onnxruntime"
    engine_options: Mapping[str, Any] = field(default_factory=dict)
    roi: Roi | None = None
    auto_roi: bool = False
    overlay_video: bool = False
    batch: int = 8
    prefetch: int = 8


class ClipTrace(BaseConsumer):
    """Collects what summary.json needs (and, with ``keep``, every result) while a clip runs."""

    def __init__(self, keep: bool = False) -> None:
        self.keep = keep
        self.results: list[FrameResult] = []
        self.frames = self.valid_frames = self.alert_frames = 0
        self.p_pivh = self.p_severe = 0.0
        self.last: FrameResult | None = None

    def on_result(self, region: RegionFrame | None, result: FrameResult) -> None:
        s = result.state
        self.frames += 1
        self.alert_frames += int(s.alert)
        if s.valid:
            # Maxima over valid frames, exactly as smoothing.summarize_clip takes them.
            self.valid_frames += 1
            self.p_pivh = max(self.p_pivh, s.p_pivh)
            self.p_severe = max(self.p_severe, s.p_severe)
        self.last = result
        if self.keep:
            self.results.append(result)


def open_clip(path: str | Path) -> Any:
    """A fast (unpaced) file source over ``path``; `MediaError` with one line if unreadable."""
    from pivh_live.media import probe_media
    from pivh_live.sources.files import FileSource

    path = Path(path)
    probe_media(path)  # fails now, with the media layer's message, for a bad input
    source = FileSource(str(path), path, pace="fast")
    source.open()
    return source


def analyze_clip(
    path: str | Path,
    engine: Any,
    out_dir: Path | None,
    options: AnalyzeOptions,
    *,
    keep_results: bool = False,
    extra: Sequence[ResultConsumer] = (),
) -> tuple[dict[str, Any], ClipTrace]:
    """Run one clip; writes frames.jsonl / summary.json (/ overlay.mp4) to ``out_dir`` if given."""
    from pivh_live.errors import MediaError

    path = Path(path)
    source = open_clip(path)
    fps = source.info.fps
    trace = ClipTrace(keep_results)
    consumers: list[ResultConsumer] = [trace, *extra]
    config = smoothing_config(engine.bundle)
    region = RegionStage(roi=options.roi, auto=options.auto_roi)
    inference = InferenceStage(engine, config, time_base="media")
    pipeline = SinglePipeline(region, inference, consumers, batch=options.batch)
    try:
        if out_dir is not None:
            pipeline.consumers += _writers(out_dir, fps, engine, config, options.overlay_video)
        stats = pipeline.run(source, prefetch=options.prefetch)
    finally:
        source.close()
        pipeline.close()
    if stats.frames == 0:
        raise MediaError(f"no frames decoded from {path}; check that the file is not empty")
    skipped = stats.frames - stats.results
    summary = clip_summary(path, trace, inference, engine, fps, stats.seconds, region, skipped)
    if out_dir is not None:
        _write_json(out_dir / SUMMARY_FILE, summary)
    return summary, trace


def _writers(
    out_dir: Path, fps: float, engine: Any, config: Any, overlay_video: bool
) -> list[ResultConsumer]:
    out_dir.mkdir(parents=True, exist_ok=True)
    writers: list[ResultConsumer] = [JsonlResultWriter(out_dir / FRAMES_FILE)]
    if overlay_video:
        from pivh_live.overlay import OverlaySettings

        label = f"{engine.bundle.name} {engine.bundle.version}"
        writers.append(
            OverlayVideoWriter(
                out_dir / OVERLAY_FILE,
                fps,
                status=lambda r: f"t {r.media_time_s:.2f} s | frame {r.seq} | {label}",
                settings=OverlaySettings.from_smoothing(config, fit=engine.bundle.fit),
            )
        )
    return writers


def clip_summary(
    path: Path,
    trace: ClipTrace,
    inference: InferenceStage,
    engine: Any,
    fps: float,
    seconds: float,
    region: RegionStage,
    skipped: int = 0,
) -> dict[str, Any]:
    """summary.json for one clip (docs/analyze.md)."""
    sweep = inference.smoother.summary()
    best = sweep.best_evidence
    roi = region.roi
    bundle = engine.bundle
    return {
        "schema": SCHEMA,
        "disclaimer": DISCLAIMER,
        "source": redact(path.name),
        "clip_grade": int(sweep.worst_grade),
        "p_pivh": float(trace.p_pivh),
        "p_severe": float(trace.p_severe),
        "assessable": trace.valid_frames > 0,
        "frames": trace.frames,
        "skipped_frames": skipped,
        "valid_frames": trace.valid_frames,
        "alert_frames": trace.alert_frames,
        "alert_onsets": int(sweep.n_alert_onsets),
        "alert_spans": [[a / 1e9, b / 1e9] for a, b in sweep.alert_spans],
        "worst_grade_t": None if sweep.worst_grade_t_ns is None else sweep.worst_grade_t_ns / 1e9,
        "best_evidence": None
        if best is None
        else {"frame": best.seq, "t": best.t_ns / 1e9, "grade": best.grade, "p": best.p},
        "fps": float(fps),
        "roi": None if roi is None else [roi.x, roi.y, roi.w, roi.h],
        "model": {"name": bundle.name, "version": bundle.version, "sha256": _sha(bundle)},
        "engine": engine.name,
        "thresholds": dict(bundle.thresholds),
        "smoothing": inference.config.to_dict(),
        "processing": {"seconds": round(seconds, 3), "fps": round(trace.frames / seconds, 1)
                       if seconds > 0 else None},
        "pivh_live_version": __version__,
    }  # fmt: skip


def _sha(bundle: Any) -> str | None:
    try:
        return str(bundle.onnx_sha256)
    except (KeyError, TypeError, AttributeError):
        return None


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8")


def output_dirs(sources: Sequence[Path], out: Path) -> list[Path]:
    """OUT itself for one input; OUT/<stem>/ each for several (``-2``, ``-3`` for repeats)."""
    if len(sources) == 1:
        return [out]
    used: dict[str, int] = {}
    dirs = []
    for src in sources:
        stem = Path(src).stem or "input"
        n = used.get(stem, 0) + 1
        used[stem] = n
        dirs.append(out / (stem if n == 1 else f"{stem}-{n}"))
    return dirs


@dataclass(frozen=True)
class BatchItem:
    source: str
    out_dir: Path
    summary: dict[str, Any] | None
    error: str | None


def analyze(
    sources: Sequence[str | Path],
    out: str | Path,
    options: AnalyzeOptions,
    *,
    engine_factory: Callable[[], Any] | None = None,
    progress: bool = True,
) -> list[BatchItem]:
    """Analyse every input; a bad input in a batch is reported and the others still run.

    With one input its `PivhError` is raised; with several, each item's
    ``error`` says what went wrong and OUT/index.json lists them all.
    """
    from tqdm import tqdm

    paths = [Path(s) for s in sources]
    out = Path(out)
    dirs = output_dirs(paths, out)
    engine = (engine_factory or (lambda: _create_engine(options)))()
    items: list[BatchItem] = []
    try:
        with tqdm(
            total=_total_frames(paths), unit="frame", disable=None if progress else True
        ) as bar:
            tick = _ProgressConsumer(bar)
            for path, out_dir in zip(paths, dirs, strict=True):
                bar.set_postfix_str(path.name)
                t0 = time.monotonic()
                try:
                    summary, _ = analyze_clip(path, engine, out_dir, options, extra=[tick])
                except PivhError as exc:
                    if len(paths) == 1:
                        raise
                    log.error("%s: %s", path.name, exc)
                    items.append(BatchItem(redact(path.name), out_dir, None, str(exc)))
                    continue
                log.info(
                    "%s: clip grade %d, P(PIVH) %.3f, %d frames in %.1f s",
                    path.name, summary["clip_grade"], summary["p_pivh"], summary["frames"],
                    time.monotonic() - t0,
                )  # fmt: skip
                items.append(BatchItem(redact(path.name), out_dir, summary, None))
    finally:
        engine.close()
    if len(paths) > 1:
        _write_index(out, items, engine)
    return items


def _create_engine(options: AnalyzeOptions) -> Any:
    from pivh_live.bundle import default_bundle_path, load_bundle
    from pivh_live.engines import create_engine

    bundle = load_bundle(options.model or default_bundle_path())
    return create_engine(options.engine, bundle, **dict(options.engine_options))


def _total_frames(paths: Sequence[Path]) -> int | None:
    from pivh_live.media import probe_media

    total = 0
    for path in paths:
        try:
            n = probe_media(path).n_frames
        except PivhError:
            continue  # reported when its turn comes
        if n is None:
            return None
        total += n
    return total


class _ProgressConsumer(BaseConsumer):
    def __init__(self, bar: Any) -> None:
        self.bar = bar

    def on_result(self, region: RegionFrame | None, result: FrameResult) -> None:
        self.bar.update(1)


def _write_index(out: Path, items: Sequence[BatchItem], engine: Any) -> None:
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for item in items:
        s = item.summary or {}
        entries.append(
            {
                "source": item.source,
                "dir": item.out_dir.name,
                "ok": item.error is None,
                "error": item.error,
                "clip_grade": s.get("clip_grade"),
                "p_pivh": s.get("p_pivh"),
                "assessable": s.get("assessable"),
                "frames": s.get("frames"),
                "alert_frames": s.get("alert_frames"),
            }
        )
    index = {
        "schema": SCHEMA,
        "disclaimer": DISCLAIMER,
        "model": {"name": engine.bundle.name, "version": engine.bundle.version},
        "inputs": entries,
        "failed": sum(1 for e in entries if not e["ok"]),
    }
    _write_json(out / INDEX_FILE, index)
