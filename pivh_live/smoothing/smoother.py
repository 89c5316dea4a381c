"""Per-frame scores -> live alert, displayed grade and sweep summary.

Pure: every method takes the capture timestamp as an argument and nothing
reads the clock, so replaying the same stream gives the same states. The
state machine and its defaults are described in docs/smoothing.md.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

from pivh_live.frames import N_GRADES, Score
from pivh_live.smoothing.config import SmoothingConfig, seconds_to_ns

logger = logging.getLogger(__name__)

STATUSES: tuple[str, ...] = ("starting", "scoring", "no_valid_image", "frozen")


@dataclass(frozen=True)
class Evidence:
    """One frame worth showing: its own (unsmoothed) P(grade >= ``grade``) is ``p``."""

    seq: int
    t_ns: int
    grade: int
    p: float


@dataclass(frozen=True)
class LiveState:
    """What the display shows after one frame.

    ``grade`` is None while starting and when no valid image is seen, never a
    stand-in 0. ``p_pivh``, ``p_severe`` and ``grade_probs`` are smoothed; all
    zero before the first valid frame (and after a timestamp gap).
    """

    t_ns: int
    seq: int
    status: str
    alert: bool
    grade: int | None
    p_pivh: float
    p_severe: float
    grade_probs: tuple[float, ...]
    valid: bool
    alert_since_ns: int | None
    worst_grade: int
    worst_grade_t_ns: int | None
    best_evidence: Evidence | None
    n_alert_onsets: int


@dataclass(frozen=True)
class SweepSummary:
    """What was seen since the last reset; survives gaps and blank spells."""

    worst_grade: int
    worst_grade_t_ns: int | None
    best_evidence: Evidence | None
    keyframes: tuple[Evidence, ...]
    alert_spans: tuple[tuple[int, int], ...]
    n_alert_onsets: int
    frames: int
    valid_frames: int

    @property
    def valid_fraction(self) -> float:
        return self.valid_frames / self.frames if self.frames else 0.0


_ZERO_PROBS: tuple[float, ...] = (0.0,) * N_GRADES


def clean_probs(values: Sequence[float]) -> tuple[float, ...] | None:
    """Grade probabilities renormalised to sum 1, or None if unusable."""
    if len(values) != N_GRADES:
        return None
    probs = [float(v) for v in values]
    total = math.fsum(probs)
    if not math.isfinite(total) or total <= 0.0 or min(probs) < 0.0:
        return None
    return tuple(p / total for p in probs)


class TemporalSmoother:
    """Stateful smoother fed one scored frame at a time, in capture order.

    ``update`` raises ValueError when a timestamp goes backwards: capture
    stamps come from a monotonic clock, so that is a caller bug.
    """

    def __init__(self, config: SmoothingConfig | None = None) -> None:
        self.config = config or SmoothingConfig()
        c = self.config
        self._tau_ns = c.ema_tau_s * 1e9
        self._onset_ns = seconds_to_ns(c.onset_min_s)
        self._offset_ns = seconds_to_ns(c.offset_min_s)
        self._grade_ns = seconds_to_ns(c.grade_min_s)
        self._invalid_ns = seconds_to_ns(c.invalid_min_s)
        self._frozen_ns = seconds_to_ns(c.frozen_min_s)
        self._gap_ns = seconds_to_ns(c.gap_reset_s)
        self._on_thr = c.onset_thresholds
        self._off_thr = c.offset_thresholds
        self.reset()

    def reset(self) -> None:
        """Forget everything, including the sweep summary (a new patient or exam)."""
        self._last_t: int | None = None
        self._frames = 0
        self._valid_frames = 0
        self._worst = 0
        self._worst_t: int | None = None
        self._best: Evidence | None = None
        self._keyframes: list[tuple[bool, Evidence]] = []  # (is_worst_peak, evidence)
        self._spans: list[tuple[int, int]] = []
        self._n_onsets = 0
        self._warned_bad = False
        self._seq = -1
        self._valid = False
        self._ema: list[float] | None = None
        self._ema_t = 0
        self._cum = (0.0, 0.0, 0.0, 0.0)
        self._alert = False
        self._alert_since: int | None = None
        self._new_segment(None, reset_ema=True)

    def _new_segment(self, end_t: int | None, reset_ema: bool) -> None:
        """Restart the decision state; the summary is kept."""
        self._end_alert(end_t)
        self._pending_since: int | None = None
        # Per grade level g (index 0-4): since when the candidate grade has been
        # continuously >= g (`_up_since`) and <= g (`_down_since`).
        self._up_since: list[int | None] = [None] * N_GRADES
        self._down_since: list[int | None] = [None] * N_GRADES
        # Per level g: the frame with the highest own P(grade >= g) since the
        # candidate last became >= g, so the evidence that raised the display
        # is kept (the display rises grade_min_s after it, often past it).
        self._run_best: list[Evidence | None] = [None] * N_GRADES
        self._stable: int | None = None
        self._grade: int | None = None
        self._no_valid = False
        self._invalid_since: int | None = None
        self._still_since: int | None = None
        self._frozen = False
        self._status = "starting"
        if reset_ema:
            self._ema = None
            self._cum = (0.0, 0.0, 0.0, 0.0)

    def _end_alert(self, end_t: int | None) -> None:
        if self._alert and self._alert_since is not None and end_t is not None:
            self._spans.append((self._alert_since, end_t))
        self._alert = False
        self._alert_since = None

    def update(
        self, t_ns: int, score: Score, motion: float | None = None, seq: int | None = None
    ) -> LiveState:
        """Feed one scored frame; return the state to display for it."""
        probs = clean_probs(score.grade_probs.tolist())
        p_valid = float(score.p_valid)
        if probs is None or not math.isfinite(p_valid):
            self._warn_bad(seq)
            probs = None
        self._step(int(t_ns), probs, p_valid, motion, seq)
        return self.state()

    def _warn_bad(self, seq: int | None) -> None:
        if not self._warned_bad:
            logger.warning(
                "unusable score at frame %s (non-finite or bad shape); treated as invalid", seq
            )
            self._warned_bad = True

    def state(self) -> LiveState:
        """The state after the last update."""
        ema = self._ema
        return LiveState(
            t_ns=self._last_t if self._last_t is not None else 0,
            seq=self._seq,
            status=self._status,
            alert=self._alert,
            grade=self._grade,
            p_pivh=self._cum[0],
            p_severe=self._cum[2],
            grade_probs=tuple(ema) if ema is not None else _ZERO_PROBS,
            valid=self._valid,
            alert_since_ns=self._alert_since,
            worst_grade=self._worst,
            worst_grade_t_ns=self._worst_t,
            best_evidence=self._best,
            n_alert_onsets=self._n_onsets,
        )

    def summary(self) -> SweepSummary:
        spans = list(self._spans)
        if self._alert and self._alert_since is not None and self._last_t is not None:
            spans.append((self._alert_since, self._last_t))
        return SweepSummary(
            worst_grade=self._worst,
            worst_grade_t_ns=self._worst_t,
            best_evidence=self._best,
            keyframes=tuple(sorted((e for _, e in self._keyframes), key=lambda e: e.t_ns)),
            alert_spans=tuple(spans),
            n_alert_onsets=self._n_onsets,
            frames=self._frames,
            valid_frames=self._valid_frames,
        )

    # --- the state machine; `_step` is shared with summarize_clip -------------

    def _step(
        self,
        t: int,
        probs: tuple[float, ...] | None,
        p_valid: float,
        motion: float | None,
        seq: int | None,
    ) -> None:
        last = self._last_t
        if last is not None:
            if t < last:
                raise ValueError(
                    f"timestamp {t} ns is before the previous one ({last} ns); "
                    "feed frames in capture order or call reset()"
                )
            if t - last > self._gap_ns:
                self._new_segment(last, reset_ema=True)
        self._last_t = t
        self._seq = seq if seq is not None else self._frames
        self._frames += 1

        if motion is not None and motion < self.config.frozen_motion_eps:
            if self._still_since is None:
                self._still_since = t
            frozen = t - self._still_since >= self._frozen_ns
        else:
            self._still_since = None
            frozen = False
        if frozen and not self._frozen:
            # Time spent frozen must not count toward any pending change.
            self._pending_since = None
            self._up_since = [None] * N_GRADES
            self._down_since = [None] * N_GRADES
            self._run_best = [None] * N_GRADES
        self._frozen = frozen

        valid = probs is not None and p_valid >= self.config.valid_threshold
        self._valid = valid
        if not valid:
            if self._invalid_since is None:
                self._invalid_since = t
            if not self._no_valid and t - self._invalid_since >= self._invalid_ns:
                self._enter_no_valid(t)
        else:
            self._valid_frames += 1
            self._invalid_since = None
            self._no_valid = False
            if not frozen:
                self._smooth(t, probs)  # type: ignore[arg-type]
                self._decide(t, probs)  # type: ignore[arg-type]

        if self._no_valid:
            self._status = "no_valid_image"
        elif frozen:
            self._status = "frozen"
        elif self._grade is None:
            self._status = "starting"
        else:
            self._status = "scoring"

    def _enter_no_valid(self, t: int) -> None:
        # Keep the EMA: it decays with the time since its last update anyway.
        self._new_segment(t, reset_ema=False)
        self._no_valid = True
        self._invalid_since = t

    def _smooth(self, t: int, probs: tuple[float, ...]) -> None:
        ema = self._ema
        if ema is None:
            ema = self._ema = list(probs)
        else:
            # Time-based weight: the exact decay of a continuous-time low-pass
            # over dt, so the result does not depend on the frame rate.
            dt = t - self._ema_t
            a = 1.0 if self._tau_ns <= 0.0 else -math.expm1(-dt / self._tau_ns)
            for i in range(N_GRADES):
                ema[i] += a * (probs[i] - ema[i])
        self._ema_t = t
        c4 = ema[4]
        c3 = ema[3] + c4
        c2 = ema[2] + c3
        self._cum = (ema[1] + c2, c2, c3, c4)

    def _decide(self, t: int, probs: tuple[float, ...]) -> None:
        cum, on = self._cum, self._on_thr
        cand = 0
        for g in (4, 3, 2, 1):
            if cum[g - 1] >= on[g - 1]:
                cand = g
                break

        onset = False
        if not self._alert:
            if cand >= 1:
                if self._pending_since is None:
                    self._pending_since = t
                if t - self._pending_since >= self._onset_ns:
                    self._alert, self._alert_since, onset = True, t, True
                    self._pending_since = None
                    self._n_onsets += 1
            else:
                self._pending_since = None
        else:
            off = self._off_thr
            if cum[0] < off[0] and cum[1] < off[1] and cum[2] < off[2] and cum[3] < off[3]:
                if self._pending_since is None:
                    self._pending_since = t
                if t - self._pending_since >= self._offset_ns:
                    self._end_alert(t)
                    self._pending_since = None
            else:
                self._pending_since = None

        self._update_stable(t, cand)
        self._track_runs(t, probs)

        # Grade > 0 exactly while the alert is on, so the display never pairs
        # an alert with "grade 0" or a grade with no alert.
        if self._alert:
            grade: int | None = max(1, self._stable or 0)
        elif self._stable is not None:
            grade = 0
        else:
            grade = None
        self._grade = grade
        if grade is not None:
            self._record(t, probs, grade, onset)

    def _update_stable(self, t: int, cand: int) -> None:
        """Move the stable grade to a level the candidate has held for `grade_min_s`.

        Ordinal, not exact: the grade rises to the lowest candidate seen over the
        last `grade_min_s` and falls to the highest, so a candidate flickering
        between III and IV after II still raises the display to III.
        """
        up, down, need = self._up_since, self._down_since, self._grade_ns
        for g in range(N_GRADES):
            if cand >= g:
                if up[g] is None:
                    up[g] = t
            else:
                up[g] = None
            if cand <= g:
                if down[g] is None:
                    down[g] = t
            else:
                down[g] = None
        held_lo = next(
            (g for g in range(N_GRADES - 1, -1, -1) if up[g] is not None and t - up[g] >= need),
            None,
        )
        if held_lo is None:  # not yet grade_min_s since the segment (re)started
            return
        held_hi = next(g for g in range(N_GRADES) if down[g] is not None and t - down[g] >= need)
        if self._stable is None or held_lo > self._stable:
            self._stable = held_lo
        elif held_hi < self._stable:
            self._stable = held_hi

    def _track_runs(self, t: int, probs: tuple[float, ...]) -> None:
        """Keep, per level, the best own evidence of the candidate's current run at or above it."""
        up, best = self._up_since, self._run_best
        for g in range(1, N_GRADES):
            if up[g] is None:
                best[g] = None
                continue
            own = math.fsum(probs[g:])  # as in _record, so equal evidence compares equal
            if best[g] is None or own > best[g].p:  # type: ignore[union-attr]
                best[g] = Evidence(self._seq, t, g, own)

    def _record(self, t: int, probs: tuple[float, ...], grade: int, onset: bool) -> None:
        if grade > self._worst:
            self._worst, self._worst_t = grade, t
            p = math.fsum(probs[grade:])
            run = self._run_best[grade]
            # The frames that built the evidence for this grade came before it was shown.
            self._best = run if run is not None and run.p > p else Evidence(self._seq, t, grade, p)
            self._add_keyframe(True, self._best)
        elif grade == self._worst and grade > 0:
            p = math.fsum(probs[grade:])
            run = self._run_best[grade]
            if run is not None and run.p > p:  # back at the worst grade: its run counts too
                if self._best is None or run.p > self._best.p:
                    self._best = run
            elif self._best is None or p > self._best.p:
                self._best = Evidence(self._seq, t, grade, p)
            if onset:
                self._add_keyframe(False, Evidence(self._seq, t, grade, p))
        elif onset:
            self._add_keyframe(False, Evidence(self._seq, t, grade, math.fsum(probs[grade:])))

    def _add_keyframe(self, is_peak: bool, evidence: Evidence) -> None:
        frames = self._keyframes
        if len(frames) >= self.config.max_keyframes:
            # Worst-grade peaks (at most four) are kept; the oldest onset goes.
            drop = next((i for i, (peak, _) in enumerate(frames) if not peak), None)
            if drop is None:
                return
            del frames[drop]
        frames.append((is_peak, evidence))
