"""Long-run (``--soak``) figures: memory growth, open descriptors and latency over time.

Memory growth is measured from a baseline taken after the warm-up (the
first sample at least ``warmup_s`` into the run: caches, allocator pools and
JIT kernels fill up first) to the last sample; a leak shows as steady
growth, a healthy process as a flat line. File descriptors are counted per
process from ``/proc/<pid>/fd``. Latency stability is the end-to-end p99
per minute of capture time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pivh_live.bench.timing import Record, per_window


def _growth(values: Sequence[float | None], t: Sequence[float], warmup_s: float) -> dict[str, Any]:
    pairs = [(ts, v) for ts, v in zip(t, values, strict=True) if v is not None]
    if len(pairs) < 2:
        return {"baseline": None, "last": None, "growth_percent": None}
    after = [p for p in pairs if p[0] >= warmup_s] or pairs[-1:]
    (t_base, base), (t_last, last) = after[0], pairs[-1]
    growth = 100.0 * (last - base) / base if base else None
    return {
        "baseline_t_s": t_base,
        "baseline": base,
        "last_t_s": t_last,
        "last": last,
        "max": max(v for _, v in pairs),
        "growth_percent": None if growth is None else round(growth, 2),
    }


def soak_summary(
    runs: Sequence[tuple[str, Sequence[Record]]],
    resource_series: Mapping[str, Any],
    *,
    window_s: float = 60.0,
    warmup_s: float | None = None,
) -> dict[str, Any]:
    """Memory growth (total and per process), fds per process, p99 per window per run."""
    t = list(resource_series.get("t_s", []))
    if warmup_s is None:
        warmup_s = min(60.0, 0.1 * t[-1]) if t else 0.0
    per_process = {}
    for pid, p in resource_series.get("per_process", {}).items():
        fds = [v for v in p["fds"] if v is not None]
        per_process[pid] = {
            "role": p["role"],
            "rss_mb": _growth(p["rss_mb"], t, warmup_s),
            "fds": {
                "first": fds[0] if fds else None,
                "last": fds[-1] if fds else None,
                "max": max(fds) if fds else None,
            },
        }
    latency = {name: per_window(recs, window_s) for name, recs in runs}
    p99s = [w["p99"] for windows in latency.values() for w in windows]
    return {
        "warmup_s": warmup_s,
        "window_s": window_s,
        "memory_total_mb": _growth(resource_series.get("rss_mb", []), t, warmup_s),
        "fds_total": {
            "first": resource_series["fds"][0] if t else None,
            "last": resource_series["fds"][-1] if t else None,
            "max": max(resource_series["fds"]) if t else None,
        },
        "per_process": per_process,
        "p99_per_window_ms": latency,
        "p99_window_spread_ms": round(max(p99s) - min(p99s), 3) if p99s else None,
    }
