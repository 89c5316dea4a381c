"""Temporal smoothing: per-frame scores -> live alert, grade and clip result.

Pure code fed explicit capture timestamps; it never reads the clock. The
live pipeline calls `TemporalSmoother.update` per frame; `evaluate` and
`analyze` call `summarize_clip`, which runs the same smoother over a clip.
See docs/smoothing.md.
"""

from pivh_live.smoothing.clip import ClipResult, summarize_clip
from pivh_live.smoothing.config import SmoothingConfig
from pivh_live.smoothing.smoother import (
    STATUSES,
    Evidence,
    LiveState,
    SweepSummary,
    TemporalSmoother,
)

__all__ = [
    "STATUSES",
    "ClipResult",
    "Evidence",
    "LiveState",
    "SmoothingConfig",
    "SweepSummary",
    "TemporalSmoother",
    "summarize_clip",
]
