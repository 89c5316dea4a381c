"""Clip-level result from per-frame scores, via the live smoother itself.

`evaluate` and `analyze` call this so offline numbers describe exactly what
the live display would have done on the same frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pivh_live.frames import N_GRADES
from pivh_live.smoothing.config import SmoothingConfig
from pivh_live.smoothing.smoother import SweepSummary, TemporalSmoother, clean_probs


@dataclass(frozen=True, eq=False)  # arrays have no single-bool ==
class ClipResult:
    """One clip's smoothed outcome plus the per-frame trace that produced it.

    ``clip_grade`` is the worst *sustained* displayed grade (a one-frame spike
    does not set it); ``p_pivh`` / ``p_severe`` are continuous scores for
    ROC analysis: the maxima over valid frames of the smoothed P(grade >= I)
    and P(grade >= III), 0.0 when no frame was valid (see ``assessable``).
    """

    clip_grade: int
    p_pivh: float
    p_severe: float
    grade_probs_peak: tuple[float, ...]
    alert_frames: int
    frames: int
    valid_frames: int
    grade: np.ndarray  # (T,) int8, -1 where no grade was shown
    alert: np.ndarray  # (T,) bool
    p_pivh_smoothed: np.ndarray  # (T,) float64
    status: np.ndarray  # (T,) str
    summary: SweepSummary

    @property
    def assessable(self) -> bool:
        """False when no frame showed a brain: the clip grade then means nothing."""
        return self.valid_frames > 0


def summarize_clip(
    t_s: np.ndarray,
    grade_probs: np.ndarray,
    p_valid: np.ndarray,
    config: SmoothingConfig | None = None,
    motion: np.ndarray | None = None,
) -> ClipResult:
    """Run `TemporalSmoother` over a clip given media times in seconds.

    ``motion`` entries that are NaN count as unknown (no frozen detection).
    Raises ValueError on mismatched shapes or times that go backwards.
    """
    t_s = np.asarray(t_s, dtype=np.float64)
    probs = np.asarray(grade_probs, dtype=np.float64)
    valid_p = np.asarray(p_valid, dtype=np.float64)
    n = t_s.shape[0]
    if t_s.ndim != 1 or probs.shape != (n, N_GRADES) or valid_p.shape != (n,):
        raise ValueError(
            f"summarize_clip needs t_s (T,), grade_probs (T, {N_GRADES}), p_valid (T,); "
            f"got {t_s.shape}, {probs.shape}, {valid_p.shape}"
        )
    if n and not np.all(np.isfinite(t_s)):
        raise ValueError("summarize_clip: t_s has non-finite times; fix the clip's timestamps")
    if n > 1 and np.any(np.diff(t_s) < 0):
        first = int(np.argmax(np.diff(t_s) < 0)) + 1
        raise ValueError(f"summarize_clip: t_s goes backwards at frame {first}; sort by time")
    motion_list: list[float | None] = [None] * n
    if motion is not None:
        m = np.asarray(motion, dtype=np.float64)
        if m.shape != (n,):
            raise ValueError(f"summarize_clip: motion must be ({n},), got {m.shape}")
        motion_list = [None if v != v else v for v in m.tolist()]

    # clean_probs per row, exactly as `update` does, so both paths agree to the bit.
    finite_valid = np.isfinite(valid_p)
    rows = [
        clean_probs(r) if ok else None
        for r, ok in zip(probs.tolist(), finite_valid.tolist(), strict=True)
    ]
    t_ns = np.round(t_s * 1e9).astype(np.int64).tolist()
    pv = np.where(np.isfinite(valid_p), valid_p, 0.0).tolist()

    sm = TemporalSmoother(config)
    step = sm._step
    grade = np.empty(n, dtype=np.int8)
    alert = np.empty(n, dtype=bool)
    p_sm = np.empty(n, dtype=np.float64)
    status: list[str] = [""] * n
    best_p, best_sev, peak = -1.0, 0.0, None
    for i in range(n):
        step(t_ns[i], rows[i], pv[i], motion_list[i], i)
        g = sm._grade
        grade[i] = -1 if g is None else g
        alert[i] = sm._alert
        p = sm._cum[0]
        p_sm[i] = p
        status[i] = sm._status
        if sm._valid:
            if p > best_p and sm._ema is not None:
                best_p, peak = p, tuple(sm._ema)
            if sm._cum[2] > best_sev:
                best_sev = sm._cum[2]

    status_arr = np.array(status, dtype="<U14")
    for arr in (grade, alert, p_sm, status_arr):
        arr.flags.writeable = False
    summary = sm.summary()
    return ClipResult(
        clip_grade=summary.worst_grade,
        p_pivh=max(best_p, 0.0),
        p_severe=best_sev,
        grade_probs_peak=peak if peak is not None else (0.0,) * N_GRADES,
        alert_frames=int(alert.sum()),
        frames=n,
        valid_frames=summary.valid_frames,
        grade=grade,
        alert=alert,
        p_pivh_smoothed=p_sm,
        status=status_arr,
        summary=summary,
    )
