"""Latency statistics over a run of timed samples.

Unit-agnostic: the results are in the unit of the samples (ns or ms).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_PERCENTILES: dict[str, float] = {"p90": 90.0, "p95": 95.0, "p99": 99.0, "p99.9": 99.9}


def latency_stats(samples: Sequence[float] | np.ndarray, trim: int = 10) -> dict[str, float]:
    """min, mean, median, p90, p95, p99, p99.9, max, stddev, tail, flatness, count.

    The first and last ``trim`` samples are left out (warm-up and shutdown
    effects). ``tail`` is p100 - p95 (how far the worst sample sits above the
    bulk); ``flatness`` is p90 - p10 (the spread of ordinary samples);
    ``stddev`` is the sample standard deviation (ddof=1; 0 for one sample).
    Percentiles interpolate linearly between samples.
    """
    values = np.asarray(samples, dtype=np.float64).ravel()
    if trim < 0:
        raise ValueError(f"trim must be >= 0, got {trim}")
    if values.size <= 2 * trim:
        raise ValueError(
            f"need more than {2 * trim} samples to trim {trim} from each end, got {values.size}"
        )
    if not np.all(np.isfinite(values)):
        raise ValueError("latency samples must be finite")
    kept = values[trim : values.size - trim]
    q = np.percentile(kept, [10.0, 50.0, *_PERCENTILES.values()])
    p10, median = q[0], q[1]
    stats: dict[str, float] = {
        "min": float(kept.min()),
        "mean": float(kept.mean()),
        "median": float(median),
    }
    stats.update({name: float(v) for name, v in zip(_PERCENTILES, q[2:], strict=True)})
    stats["max"] = float(kept.max())
    stats["stddev"] = float(kept.std(ddof=1)) if kept.size > 1 else 0.0
    stats["tail"] = stats["max"] - stats["p95"]
    stats["flatness"] = stats["p90"] - float(p10)
    stats["count"] = int(kept.size)
    return stats
