"""How the live alert behaves on labelled sweeps: delay to alert, flips, false alerts.

Pure functions over per-frame arrays (times, the labelled visible grade, the
smoother's alert and grade), plus a runner that plays every clip of a
labelled dataset through the pipeline (`analyze`'s code path) and reports:

- delay from a lesion entering view to the alert (per lesion episode);
- alert flips (on <-> off changes) and displayed-grade changes per minute;
- false alert onsets per hour on grade-0 clips.

    python -m pivh_live.pipeline.alert_metrics --model models/pivh-phantom --data data/test
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LesionEpisode:
    """Frames ``start``..``end`` (inclusive) show a lesion (gaps under ``merge_gap_s`` merged).

    ``delay_s``: time from ``start`` to the first alert onset at or after it
    and no later than ``late_s`` after the episode ends; None when the alert
    did not come (a miss) or was already on when the lesion appeared
    (``already_on``: held from an earlier pass, so no delay is measurable).
    """

    start: int
    end: int
    t_start: float
    t_end: float
    already_on: bool
    delay_s: float | None

    @property
    def detected(self) -> bool:
        return self.already_on or self.delay_s is not None


def alert_onsets(alert: Sequence[bool] | np.ndarray) -> np.ndarray:
    """Indices where the alert turns on (a clip starting with the alert on counts at 0)."""
    a = np.asarray(alert, dtype=bool)
    if a.size == 0:
        return np.zeros(0, dtype=np.int64)
    prev = np.concatenate(([False], a[:-1]))
    return np.flatnonzero(a & ~prev)


def changes(values: Sequence[Any] | np.ndarray) -> int:
    """Number of positions where a value differs from the one before."""
    v = np.asarray(values)
    return int(np.count_nonzero(v[1:] != v[:-1])) if v.size > 1 else 0


def grade_changes(grade: Sequence[int] | np.ndarray) -> int:
    """Changes of the displayed grade between frames that show one (-1: none shown)."""
    g = np.asarray(grade, dtype=np.int64)
    return changes(g[g >= 0])


def clip_duration_s(t_s: Sequence[float] | np.ndarray) -> float:
    """Span of the clip including its last frame's period (median frame interval)."""
    t = np.asarray(t_s, dtype=np.float64)
    if t.size == 0:
        return 0.0
    if t.size == 1:
        return 0.0
    return float(t[-1] - t[0] + np.median(np.diff(t)))


def lesion_episodes(
    t_s: Sequence[float] | np.ndarray,
    visible_grade: Sequence[int] | np.ndarray,
    merge_gap_s: float = 0.5,
) -> list[tuple[int, int]]:
    """Runs of frames with ``visible_grade >= 1``; runs less than ``merge_gap_s`` apart merge."""
    t = np.asarray(t_s, dtype=np.float64)
    lesion = np.asarray(visible_grade) >= 1
    runs: list[tuple[int, int]] = []
    idx = np.flatnonzero(lesion)
    if idx.size == 0:
        return runs
    start = prev = int(idx[0])
    for i in idx[1:].tolist():
        if i == prev + 1 or t[i] - t[prev] < merge_gap_s:
            prev = i
            continue
        runs.append((start, prev))
        start = prev = i
    runs.append((start, prev))
    return runs


def alert_delays(
    t_s: Sequence[float] | np.ndarray,
    visible_grade: Sequence[int] | np.ndarray,
    alert: Sequence[bool] | np.ndarray,
    *,
    merge_gap_s: float = 0.5,
    late_s: float = 1.0,
) -> list[LesionEpisode]:
    """One `LesionEpisode` per lesion appearance, with its delay to alert."""
    t = np.asarray(t_s, dtype=np.float64)
    a = np.asarray(alert, dtype=bool)
    onsets = alert_onsets(a)
    out = []
    for start, end in lesion_episodes(t, visible_grade, merge_gap_s):
        already = bool(start > 0 and a[start - 1] and a[start])
        delay = None
        if not already:
            later = onsets[(onsets >= start) & (t[onsets] <= t[end] + late_s)]
            if later.size:
                delay = float(t[later[0]] - t[start])
        out.append(LesionEpisode(start, end, float(t[start]), float(t[end]), already, delay))
    return out


@dataclass(frozen=True)
class ClipAlertMetrics:
    case_id: str
    clip_grade: int
    duration_s: float
    alert_flips: int
    grade_changes: int
    alert_onsets: int
    episodes: tuple[LesionEpisode, ...]


def clip_alert_metrics(
    case_id: str,
    clip_grade: int,
    t_s: Sequence[float] | np.ndarray,
    visible_grade: Sequence[int] | np.ndarray,
    alert: Sequence[bool] | np.ndarray,
    grade: Sequence[int] | np.ndarray,
    **episode_options: float,
) -> ClipAlertMetrics:
    return ClipAlertMetrics(
        case_id=case_id,
        clip_grade=int(clip_grade),
        duration_s=clip_duration_s(t_s),
        alert_flips=changes(np.asarray(alert, dtype=bool)),
        grade_changes=grade_changes(grade),
        alert_onsets=int(alert_onsets(alert).size),
        episodes=tuple(alert_delays(t_s, visible_grade, alert, **episode_options)),
    )


def aggregate(clips: Sequence[ClipAlertMetrics]) -> dict[str, Any]:
    """Pooled numbers: rates are totals over total time, delays over measurable episodes."""
    minutes = sum(c.duration_s for c in clips) / 60.0
    normal = [c for c in clips if c.clip_grade == 0]
    normal_hours = sum(c.duration_s for c in normal) / 3600.0
    episodes = [e for c in clips for e in c.episodes]
    delays = np.array([e.delay_s for e in episodes if e.delay_s is not None], dtype=np.float64)

    def pct(q: float) -> float | None:
        return float(np.percentile(delays, q)) if delays.size else None

    return {
        "clips": len(clips),
        "minutes": minutes,
        "alert_flips_per_minute": sum(c.alert_flips for c in clips) / minutes if minutes else None,
        "grade_changes_per_minute": sum(c.grade_changes for c in clips) / minutes
        if minutes
        else None,
        "normal_clips": len(normal),
        "normal_hours": normal_hours,
        "false_alerts_per_hour": sum(c.alert_onsets for c in normal) / normal_hours
        if normal_hours
        else None,
        "lesion_episodes": len(episodes),
        "episodes_detected": sum(e.detected for e in episodes),
        "episodes_already_alerting": sum(e.already_on for e in episodes),
        "delay_s": {"n": int(delays.size), "median": pct(50), "p90": pct(90),
                    "mean": float(delays.mean()) if delays.size else None,
                    "max": float(delays.max()) if delays.size else None},
    }  # fmt: skip


def measure_dataset(
    model: Path | None,
    data: Path,
    *,
    engine_name: str = "onnxruntime",
    split: str | None = None,
    limit: int | None = None,
) -> tuple[list[ClipAlertMetrics], dict[str, Any]]:
    """Run every labelled clip of ``data`` through the pipeline and measure the alert."""
    from pivh_live.dataset import load_frame_labels, read_dataset
    from pivh_live.pipeline.analyze import AnalyzeOptions, _create_engine, analyze_clip

    cases = [c for c in read_dataset(data).cases if split is None or c.split == split]
    cases = cases[:limit] if limit is not None else cases
    options = AnalyzeOptions(model=model, engine=engine_name)
    clips = []
    with _create_engine(options) as engine:
        for case in cases:
            labels = load_frame_labels(case)
            if labels is None:
                log.warning("case %s has no frame labels; skipped", case.case_id)
                continue
            opts = AnalyzeOptions(model=model, engine=engine_name, roi=case.roi)
            _, trace = analyze_clip(case.media, engine, None, opts, keep_results=True)
            res = trace.results
            frame = np.array([r.seq for r in res], dtype=np.int64)
            visible = np.full(len(res), -1, dtype=np.int64)
            by_frame = dict(zip(labels.frame.tolist(), labels.visible_grade.tolist(), strict=True))
            visible[:] = [by_frame.get(int(f), -1) for f in frame]
            clips.append(
                clip_alert_metrics(
                    case.case_id,
                    case.clip_grade,
                    [r.media_time_s for r in res],
                    visible,
                    [r.state.alert for r in res],
                    [-1 if r.state.grade is None else r.state.grade for r in res],
                )
            )
            log.info(
                "%s: %d frames, %d alert onsets", case.case_id, len(res), clips[-1].alert_onsets
            )
    return clips, aggregate(clips)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m pivh_live.pipeline.alert_metrics", description=__doc__
    )
    p.add_argument("--model", type=Path, default=None, help="model bundle (default: shipped)")
    p.add_argument("--data", type=Path, required=True, help="labelled dataset (phantom) directory")
    p.add_argument("--engine", default="onnxruntime")
    p.add_argument("--split", default=None, help="only cases of this split (e.g. test)")
    p.add_argument("--limit", type=int, default=None, help="at most this many cases")
    p.add_argument("--out", type=Path, default=None, help="write per-clip and pooled JSON here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from pivh_live.errors import PivhError

    try:
        clips, pooled = measure_dataset(
            args.model, args.data, engine_name=args.engine, split=args.split, limit=args.limit
        )
    except PivhError as exc:
        sys.stderr.write(f"alert_metrics: error: {exc}\n")
        return 1
    sys.stdout.write(format_report(pooled))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        data = {"pooled": pooled, "clips": [asdict(c) for c in clips]}
        args.out.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return 0


def format_report(pooled: dict[str, Any]) -> str:
    def f(v: float | None, unit: str = "") -> str:
        return "--" if v is None else f"{v:.2f}{unit}"

    d = pooled["delay_s"]
    return (
        f"clips {pooled['clips']} ({pooled['minutes']:.1f} min); "
        f"normal clips {pooled['normal_clips']} ({pooled['normal_hours'] * 60:.1f} min)\n"
        f"delay lesion -> alert: median {f(d['median'], ' s')}, p90 {f(d['p90'], ' s')}, "
        f"max {f(d['max'], ' s')} over {d['n']} episodes; detected "
        f"{pooled['episodes_detected']}/{pooled['lesion_episodes']}\n"
        f"alert flips per minute: {f(pooled['alert_flips_per_minute'])}; "
        f"grade changes per minute: {f(pooled['grade_changes_per_minute'])}\n"
        f"false alerts per hour on normal clips: {f(pooled['false_alerts_per_hour'])}\n"
    )


if __name__ == "__main__":
    raise SystemExit(main())
