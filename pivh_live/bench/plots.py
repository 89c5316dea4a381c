"""PNG plots of a benchmark run (matplotlib, imported here only; skipped if missing).

- ``latency_cdf.png``: end-to-end latency CDF of the pipeline (each
  instance) and the naive loop, with the engine floor's median and p99.
- ``stages.png``: median and p99 time per pipeline stage.
- ``latency_time.png``: end-to-end latency of every frame over the run.
- ``soak.png`` (``--soak``): total RSS, open descriptors and p99 per minute.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pivh_live.bench.timing import Record, stamp_ms

log = logging.getLogger(__name__)


def _pyplot() -> Any | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed; no plots (pip install 'pivh-live[report]')")
        return None
    return plt


def write_plots(
    out: Path,
    report: Mapping[str, Any],
    runs: Sequence[tuple[str, Sequence[Record]]],
    resource_series: Mapping[str, Any] | None = None,
) -> list[str]:
    """Write the plots for ``report`` (kept ``runs``: (name, records)); the file names written."""
    plt = _pyplot()
    if plt is None or not runs:
        return []
    out.mkdir(parents=True, exist_ok=True)
    written = [
        _cdf(plt, out / "latency_cdf.png", report, runs),
        _over_time(plt, out / "latency_time.png", runs),
    ]
    if "pipeline" in report:
        written.append(_stages(plt, out / "stages.png", report["pipeline"]["instances"][0]))
    if report.get("soak") and resource_series:
        written.append(_soak(plt, out / "soak.png", report["soak"], resource_series))
    return [p.name for p in written]


def _cdf(plt: Any, path: Path, report: Mapping[str, Any], runs: Sequence[tuple[str, Any]]) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, recs in runs:
        v = np.sort(stamp_ms(recs, "overlay"))
        ax.plot(v, np.arange(1, v.size + 1) / v.size, label=name)
    if "engine_loop" in report:
        lat = report["engine_loop"]["latency_ms"]
        ax.axvline(lat["median"], color="k", ls="--", lw=1, label="engine floor median")
        ax.axvline(lat["p99"], color="k", ls=":", lw=1, label="engine floor p99")
    ax.set_xlabel("capture -> overlay ready (ms)")
    ax.set_ylabel("fraction of frames")
    ax.set_xlim(left=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _stages(plt: Any, path: Path, summary: Mapping[str, Any]) -> Path:
    names = list(summary["stages_ms"])
    med = [summary["stages_ms"][n]["median"] for n in names]
    p99 = [summary["stages_ms"][n]["p99"] for n in names]
    y = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(names) + 1.5))
    ax.barh(y - 0.2, med, height=0.4, label="median")
    ax.barh(y + 0.2, p99, height=0.4, label="p99")
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlabel("time since the previous stamp (ms)")
    ax.legend()
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _over_time(plt: Any, path: Path, runs: Sequence[tuple[str, Any]]) -> Path:
    fig, ax = plt.subplots(figsize=(8, 4))
    for name, recs in runs:
        caps = np.array([s["capture"] for _, s in recs], dtype=np.float64)
        ax.plot((caps - caps.min()) / 1e9, stamp_ms(recs, "overlay"), ".", ms=2, label=name)
    ax.set_xlabel("run time (s)")
    ax.set_ylabel("capture -> overlay ready (ms)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, markerscale=4)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _soak(plt: Any, path: Path, soak: Mapping[str, Any], series: Mapping[str, Any]) -> Path:
    fig, axes = plt.subplots(3, 1, figsize=(8, 8), sharex=False)
    t = series["t_s"]
    axes[0].plot(t, series["rss_mb"])
    axes[0].set_ylabel("RSS, all processes (MB)")
    axes[1].plot(t, series["fds"])
    axes[1].set_ylabel("open fds")
    for name, windows in soak["p99_per_window_ms"].items():
        axes[2].plot([w["start_s"] / 60 for w in windows], [w["p99"] for w in windows], "o-",
                     label=name)  # fmt: skip
    axes[2].set_xlabel("minute of the run")
    axes[2].set_ylabel("p99 per minute (ms)")
    axes[2].legend(fontsize=8)
    for ax in axes:
        ax.grid(True, alpha=0.3)
    axes[1].set_xlabel("seconds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
