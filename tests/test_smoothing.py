"""Temporal smoother: exact timing on synthetic score streams (no clock, no sleeps)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pivh_live.errors import ConfigError
from pivh_live.frames import Score
from pivh_live.smoothing import (
    STATUSES,
    LiveState,
    SmoothingConfig,
    TemporalSmoother,
    summarize_clip,
)

MS = 1_000_000
HEAT = np.zeros((4, 4), dtype=np.float32)


def score_cum(c1: float, c2: float = 0.0, c3: float = 0.0, c4: float = 0.0, valid: float = 1.0):
    """Score whose P(grade >= g) are c1..c4."""
    probs = np.array([1 - c1, c1 - c2, c2 - c3, c3 - c4, c4], dtype=np.float64)
    return Score(grade_probs=probs, p_valid=valid, heatmap=HEAT)


def feed(sm: TemporalSmoother, t0_ms: float, t1_ms: float, step_ms: float, score, motion=None):
    """Feed `score` at t0, t0+step, ... < t1 (ms); return the states."""
    out: list[LiveState] = []
    n = round((t1_ms - t0_ms) / step_ms)
    for i in range(n):
        out.append(sm.update(round((t0_ms + i * step_ms) * MS), score, motion))
    return out


def raw(**overrides) -> SmoothingConfig:
    """No EMA, so timing tests see the thresholds directly."""
    return SmoothingConfig.from_thresholds(0.5, 0.5, ema_tau_s=0.0, **overrides)


# --- hysteresis ---------------------------------------------------------------


def test_onset_after_exactly_onset_min_s_of_high_score() -> None:
    sm = TemporalSmoother(raw(onset_min_s=0.3))
    low = feed(sm, 0, 500, 50, score_cum(0.1))
    high = feed(sm, 500, 1500, 50, score_cum(0.9))
    assert not any(s.alert for s in low)
    # High from t=500 ms: the frame at 750 ms is 250 ms in, the one at 800 ms is 300 ms in.
    by_t = {s.t_ns // MS: s for s in high}
    assert not by_t[750].alert
    assert by_t[800].alert
    assert by_t[800].alert_since_ns == 800 * MS
    assert by_t[800].grade == 1
    assert by_t[800].n_alert_onsets == 1


def test_alert_stays_on_through_short_dip_and_in_hysteresis_band() -> None:
    cfg = raw(onset_min_s=0.3, offset_min_s=1.0, hysteresis=0.15)
    assert cfg.offset_threshold == pytest.approx(0.35)
    sm = TemporalSmoother(cfg)
    feed(sm, 0, 1000, 40, score_cum(0.9))
    dip = feed(sm, 1000, 1800, 40, score_cum(0.05))  # 0.8 s < offset_min_s
    band = feed(sm, 1800, 8000, 40, score_cum(0.4))  # below onset, above offset
    assert all(s.alert for s in dip + band)
    assert band[-1].n_alert_onsets == 1
    assert band[-1].grade == 1


def test_alert_turns_off_after_offset_min_s_below_offset() -> None:
    sm = TemporalSmoother(raw(offset_min_s=1.0, hysteresis=0.15))
    feed(sm, 0, 1000, 50, score_cum(0.9))
    low = feed(sm, 1000, 3000, 50, score_cum(0.3))  # 0.3 < 0.35 offset
    by_t = {s.t_ns // MS: s for s in low}
    assert by_t[1950].alert
    assert not by_t[2000].alert
    assert by_t[2000].grade == 0
    assert sm.summary().alert_spans == ((300 * MS, 2000 * MS),)


def test_onset_time_is_frame_rate_independent() -> None:
    tau, onset_min = 0.3, 0.3
    cfg = SmoothingConfig.from_thresholds(0.5, 0.5, ema_tau_s=tau, onset_min_s=onset_min)
    onsets = {}
    for fps in (25, 60):
        sm = TemporalSmoother(cfg)
        t_on = None
        for i in range(5 * fps):
            t_ns = i * 1_000_000_000 // fps
            s = sm.update(t_ns, score_cum(0.9 if t_ns >= 1_000_000_000 else 0.1))
            if s.alert and t_on is None:
                t_on = t_ns / 1e9
        onsets[fps] = t_on
    # Continuous-time step response crosses 0.5 at 1 + tau*ln(0.8/0.4). A
    # sample weighs the interval before it, so the sampled step starts up to
    # one frame early; crossing and onset checks each land up to a frame late.
    expected = 1.0 + tau * math.log(2.0) + onset_min
    assert abs(onsets[25] - onsets[60]) <= 1 / 25
    for fps, t_on in onsets.items():
        assert expected - 1 / fps <= t_on <= expected + 2 / fps


# --- validity and frozen frames -----------------------------------------------


def test_invalid_frames_give_no_valid_image_never_normal() -> None:
    sm = TemporalSmoother(raw(invalid_min_s=0.2))
    on = feed(sm, 0, 1000, 40, score_cum(0.9))
    assert on[-1].alert
    p_before = on[-1].p_pivh
    # Blank frames whose grade head says "normal": they must not enter the EMA.
    blank = feed(sm, 1000, 2000, 40, score_cum(0.0, valid=0.1))
    by_t = {s.t_ns // MS: s for s in blank}
    assert by_t[1160].status == "scoring" and by_t[1160].alert
    assert by_t[1160].p_pivh == p_before
    for t_ms in range(1200, 2000, 40):
        s = by_t[t_ms]
        assert s.status == "no_valid_image"
        assert s.grade is None
        assert not s.alert
        assert not s.valid
    assert sm.summary().worst_grade == 1
    assert sm.summary().alert_spans == ((320 * MS, 1200 * MS),)  # first frame >= 300 ms
    # Back on a brain: grade withheld until it is stable again.
    back = feed(sm, 2000, 3000, 40, score_cum(0.1))
    assert back[0].status == "starting" and back[0].grade is None
    assert back[-1].status == "scoring" and back[-1].grade == 0


def test_stream_that_never_shows_a_brain_never_reports_a_grade() -> None:
    sm = TemporalSmoother()
    states = feed(sm, 0, 3000, 40, score_cum(0.0, valid=0.2))
    assert {s.status for s in states} == {"starting", "no_valid_image"}
    assert all(s.grade is None and not s.alert for s in states)
    assert states[-1].status == "no_valid_image"
    assert sm.summary().valid_frames == 0


def test_unusable_score_is_treated_as_invalid() -> None:
    sm = TemporalSmoother(raw())
    feed(sm, 0, 1000, 40, score_cum(0.1))
    nan = Score(grade_probs=np.full(5, np.nan), p_valid=0.9, heatmap=HEAT)
    s = sm.update(1000 * MS, nan)
    assert not s.valid
    assert s.p_pivh == pytest.approx(0.1)


def test_frozen_screen_is_flagged_and_holds_the_alert() -> None:
    sm = TemporalSmoother(raw(frozen_min_s=1.0, frozen_motion_eps=0.5))
    feed(sm, 0, 1000, 40, score_cum(0.9), motion=5.0)
    still = feed(sm, 1000, 3000, 40, score_cum(0.1), motion=0.1)
    by_t = {s.t_ns // MS: s for s in still}
    assert by_t[1960].status == "scoring"
    for t_ms in range(2000, 3000, 40):
        s = by_t[t_ms]
        assert s.status == "frozen"
        assert s.alert  # held, flagged by status
    # A frozen screen's scores must not move the smoothed state.
    assert by_t[2960].p_pivh == by_t[2000].p_pivh
    resumed = sm.update(3000 * MS, score_cum(0.9), motion=3.0)
    assert resumed.status == "scoring"
    assert resumed.alert


def test_unknown_motion_never_reports_frozen() -> None:
    sm = TemporalSmoother(raw())
    states = feed(sm, 0, 5000, 40, score_cum(0.9), motion=None)
    assert "frozen" not in {s.status for s in states}


# --- grades ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cum", "severe", "expected"),
    [
        ((0.8, 0.6, 0.3, 0.1), 0.25, 3),
        ((0.8, 0.6, 0.3, 0.1), 0.35, 2),
        ((0.8, 0.4, 0.3, 0.1), 0.35, 1),
        ((0.9, 0.8, 0.7, 0.6), 0.5, 4),
        ((0.3, 0.1, 0.0, 0.0), 0.5, 0),
    ],
)
def test_grade_is_highest_level_over_its_cumulative_threshold(cum, severe, expected) -> None:
    sm = TemporalSmoother(SmoothingConfig.from_thresholds(0.5, severe))
    states = feed(sm, 0, 3000, 40, score_cum(*cum))
    assert states[-1].grade == expected
    assert states[-1].alert == (expected > 0)
    assert states[-1].p_severe == pytest.approx(cum[2])


def test_severe_evidence_alerts_even_below_the_pivh_threshold() -> None:
    sm = TemporalSmoother(SmoothingConfig.from_thresholds(0.6, 0.3))
    last = feed(sm, 0, 3000, 40, score_cum(0.45, 0.4, 0.35))[-1]
    assert last.grade == 3
    assert last.alert


def test_worst_grade_needs_a_sustained_grade_not_a_spike() -> None:
    sm = TemporalSmoother(raw(grade_min_s=0.5, onset_min_s=0.3))
    feed(sm, 0, 1000, 40, score_cum(0.1))
    sm.update(1000 * MS, score_cum(0.99, 0.98, 0.97, 0.96), seq=1000)  # one-frame grade IV
    feed(sm, 1040, 2000, 40, score_cum(0.1))
    assert sm.summary().worst_grade == 0
    assert sm.summary().n_alert_onsets == 0
    sustained = feed(sm, 2000, 4000, 40, score_cum(0.9, 0.8))
    summary = sm.summary()
    assert sustained[-1].grade == 2
    assert summary.worst_grade == 2
    assert summary.worst_grade_t_ns == 2520 * MS  # first frame >= 2000 + grade_min_s
    assert summary.best_evidence is not None and summary.best_evidence.grade == 2
    assert [k.grade for k in summary.keyframes] == [1, 2]


def test_best_evidence_is_the_frame_that_built_the_grade_not_a_later_one() -> None:
    # A sweep passes a bleed in 0.68 s; the averaged evidence outlasts it, so the
    # display reaches IV (grade_min_s after the run began) when the frames on
    # screen no longer show it. The reviewer's frame must be one that did.
    sm = TemporalSmoother(SmoothingConfig.from_thresholds(0.5, 0.5, ema_tau_s=0.3))
    feed(sm, 0, 1000, 40, score_cum(0.05))
    for i, t in enumerate(range(1000, 1680, 40)):
        sm.update(t * MS, score_cum(0.99, 0.98, 0.97, 0.9 + 0.001 * i), seq=t // 40)
    after = feed(sm, 1680, 3000, 40, score_cum(0.2, 0.1, 0.05, 0.02))
    summary = sm.summary()
    assert summary.worst_grade == 4
    assert summary.worst_grade_t_ns >= 1680 * MS  # shown only after the bleed was passed
    assert any(s.grade == 4 for s in after)
    best = summary.best_evidence
    assert best is not None and best.grade == 4
    assert 1000 * MS <= best.t_ns < 1680 * MS and best.seq == best.t_ns // MS // 40
    assert best.p > 0.9
    worst_keys = [k for k in summary.keyframes if k.grade == 4]
    assert worst_keys == [best]
    assert [k.t_ns for k in summary.keyframes] == sorted(k.t_ns for k in summary.keyframes)


@pytest.mark.parametrize("interruption", ["gap", "freeze"])
def test_evidence_from_before_a_gap_or_freeze_is_not_carried_over(interruption: str) -> None:
    # A strong but short run (too short to raise the display), then a gap in the
    # stream or a frozen picture, then a weaker run that does raise it: the
    # worst grade's frame must come from the run that raised it.
    sm = TemporalSmoother(SmoothingConfig.from_thresholds(0.5, 0.5, frozen_min_s=0.2))
    iv_strong, iv_weak = score_cum(0.99, 0.99, 0.99, 0.99), score_cum(0.9, 0.85, 0.82, 0.8)
    feed(sm, 0, 1000, 40, score_cum(0.05), motion=5.0)
    feed(sm, 1000, 1320, 40, iv_strong, motion=5.0)  # the average passes 0.5 at ~1.2 s
    if interruption == "gap":
        resume = 1320 + 3000  # > gap_reset_s
    else:
        feed(sm, 1320, 2400, 40, iv_strong, motion=0.0)  # frozen from 1520 ms on
        resume = 2400
    feed(sm, resume, resume + 800, 40, iv_weak, motion=5.0)
    feed(sm, resume + 800, resume + 2000, 40, score_cum(0.05), motion=5.0)
    summary = sm.summary()
    assert summary.worst_grade == 4
    best = summary.best_evidence
    assert best is not None and best.t_ns >= resume * MS
    assert best.p == pytest.approx(0.8)


def test_keyframes_are_bounded_and_keep_worst_peaks() -> None:
    cfg = raw(max_keyframes=4, onset_min_s=0.0, offset_min_s=0.0, grade_min_s=0.0)
    sm = TemporalSmoother(cfg)
    sm.update(0, score_cum(0.9, 0.8, 0.7))  # worst-grade peak III
    t = 40
    for _ in range(10):  # ten more onsets
        sm.update(t * MS, score_cum(0.0))
        sm.update((t + 40) * MS, score_cum(0.9))
        t += 80
    summary = sm.summary()
    assert summary.n_alert_onsets == 11
    assert len(summary.keyframes) == 4
    assert summary.keyframes[0].grade == 3 and summary.keyframes[0].t_ns == 0


# --- time handling --------------------------------------------------------------


def test_timestamp_gap_resets_ema_but_keeps_summary() -> None:
    sm = TemporalSmoother(SmoothingConfig(ema_tau_s=0.3, gap_reset_s=2.0))
    feed(sm, 0, 2000, 40, score_cum(0.9))
    assert sm.summary().worst_grade == 1
    s = sm.update(5000 * MS, score_cum(0.2))
    assert s.p_pivh == pytest.approx(0.2)  # a fresh EMA starts at the frame
    assert s.status == "starting" and s.grade is None and not s.alert
    summary = sm.summary()
    assert summary.worst_grade == 1
    assert summary.alert_spans[-1][1] == 1960 * MS


def test_small_gap_keeps_ema() -> None:
    sm = TemporalSmoother(SmoothingConfig(ema_tau_s=0.3, gap_reset_s=2.0))
    feed(sm, 0, 2000, 40, score_cum(0.9))
    s = sm.update(3000 * MS, score_cum(0.2))
    a = -math.expm1(-1.04 / 0.3)
    assert s.p_pivh == pytest.approx(0.9 + a * (0.2 - 0.9))


def test_backwards_timestamp_raises() -> None:
    sm = TemporalSmoother()
    sm.update(1000 * MS, score_cum(0.1))
    sm.update(1000 * MS, score_cum(0.1))  # equal is fine
    with pytest.raises(ValueError, match="before the previous"):
        sm.update(999 * MS, score_cum(0.1))


def test_reset_forgets_the_sweep() -> None:
    sm = TemporalSmoother(raw())
    feed(sm, 0, 2000, 40, score_cum(0.9))
    sm.reset()
    assert sm.summary().frames == 0 and sm.summary().worst_grade == 0
    s = sm.update(0, score_cum(0.1))
    assert s.status == "starting"


# --- config ---------------------------------------------------------------------


def test_config_rejects_bad_and_unknown_settings() -> None:
    with pytest.raises(ConfigError, match="onset_min"):
        SmoothingConfig.from_thresholds(0.5, 0.5, onset_min=0.3)
    with pytest.raises(ConfigError, match="pivh_threshold"):
        SmoothingConfig.from_thresholds(1.5, 0.5)
    with pytest.raises(ConfigError, match="ema_tau_s"):
        SmoothingConfig(ema_tau_s=-1.0)
    cfg = SmoothingConfig.from_thresholds(0.12, 0.4, hysteresis=0.15)
    assert cfg.offset_threshold == pytest.approx(0.05)  # clamped
    assert SmoothingConfig.from_thresholds(0.03, 0.4).offset_threshold == pytest.approx(0.03)
    assert SmoothingConfig.from_dict(cfg.to_dict()) == cfg


# --- clip results ---------------------------------------------------------------


def random_stream(rng: np.random.Generator, n: int):
    t_s = np.cumsum(rng.uniform(0.0, 0.08, n))
    t_s[n // 2 :] += 3.0  # one gap
    level = np.repeat(rng.uniform(0, 1, n // 25 + 1), 25)[:n]
    probs = rng.dirichlet(np.ones(5), n) * 0.3
    probs[:, 0] += 0.7 * (1 - level)
    probs[:, 2] += 0.7 * level
    p_valid = np.where(rng.random(n) < 0.1, 0.05, 0.95)
    p_valid[300:330] = 0.05  # probe lifted
    motion = np.where(rng.random(n) < 0.3, 0.0, 4.0)
    motion[100:160] = 0.1  # a frozen stretch
    return t_s, probs, p_valid, motion


def test_summarize_clip_equals_running_the_smoother() -> None:
    rng = np.random.default_rng(7)
    t_s, probs, p_valid, motion = random_stream(rng, 600)
    cfg = SmoothingConfig.from_thresholds(0.45, 0.3)
    result = summarize_clip(t_s, probs, p_valid, cfg, motion=motion)

    sm = TemporalSmoother(cfg)
    states = [
        sm.update(round(t * 1e9), Score(probs[i], float(p_valid[i]), HEAT), motion[i], seq=i)
        for i, t in enumerate(t_s)
    ]
    assert result.grade.tolist() == [-1 if s.grade is None else s.grade for s in states]
    assert result.alert.tolist() == [s.alert for s in states]
    assert result.status.tolist() == [s.status for s in states]
    np.testing.assert_allclose(result.p_pivh_smoothed, [s.p_pivh for s in states], atol=1e-12)
    assert result.summary == sm.summary()
    assert result.clip_grade == sm.summary().worst_grade
    valid = [s for s in states if s.valid]
    peak = max(valid, key=lambda s: s.p_pivh)
    assert result.p_pivh == pytest.approx(peak.p_pivh)
    assert result.p_severe == pytest.approx(max(s.p_severe for s in valid))
    assert result.grade_probs_peak == pytest.approx(peak.grade_probs)
    assert result.alert_frames == sum(s.alert for s in states)
    assert result.valid_frames == len(valid)
    assert {"frozen", "no_valid_image", "scoring"} <= set(result.status.tolist())


def test_clip_spike_vs_sustained_and_empty_validity() -> None:
    t_s = np.arange(125) / 25
    probs = np.tile([0.9, 0.1, 0.0, 0.0, 0.0], (125, 1))
    probs[60] = [0.0, 0.0, 0.0, 0.0, 1.0]
    spike = summarize_clip(t_s, probs, np.ones(125))
    assert spike.clip_grade == 0
    assert spike.p_pivh > 0.1  # the continuous score still sees the spike
    probs[60:100] = [0.0, 0.1, 0.1, 0.7, 0.1]
    assert summarize_clip(t_s, probs, np.ones(125)).clip_grade == 3
    blind = summarize_clip(t_s, probs, np.zeros(125))
    assert not blind.assessable and blind.p_pivh == 0.0 and blind.clip_grade == 0
    assert (blind.grade == -1).all()


def test_summarize_clip_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="grade_probs"):
        summarize_clip(np.arange(3.0), np.zeros((3, 4)), np.ones(3))
    with pytest.raises(ValueError, match="backwards at frame 2"):
        summarize_clip(np.array([0.0, 1.0, 0.5]), np.full((3, 5), 0.2), np.ones(3))


# --- property -------------------------------------------------------------------

frame = st.tuples(
    st.integers(0, 3_000_000_000),  # time step, up to a reset-sized gap
    st.lists(st.floats(0.0, 1.0), min_size=5, max_size=5),
    st.floats(0.0, 1.0),
    st.one_of(st.none(), st.floats(0.0, 10.0)),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(frame, max_size=200), st.floats(0.05, 0.95), st.floats(0.05, 0.95))
def test_random_streams_keep_the_invariants(frames, pivh, severe) -> None:
    sm = TemporalSmoother(SmoothingConfig.from_thresholds(pivh, severe))
    t = 0
    onsets = 0
    for dt, probs, p_valid, motion in frames:
        t += dt
        s = sm.update(t, Score(np.array(probs), p_valid, HEAT), motion)
        assert s.status in STATUSES
        assert s.grade is None or 0 <= s.grade <= 4
        if s.status == "no_valid_image":
            assert not s.alert and s.grade is None
        if s.grade is not None and s.status != "frozen":
            assert (s.grade > 0) == s.alert
        assert 0.0 <= s.p_pivh <= 1.0 + 1e-9
        assert s.n_alert_onsets >= onsets
        onsets = s.n_alert_onsets
    summary = sm.summary()
    assert summary.frames == len(frames)
    assert 0 <= summary.worst_grade <= 4
    assert len(summary.keyframes) <= sm.config.max_keyframes


def test_grade_flickering_between_iii_and_iv_still_shows_iii() -> None:
    """Sustained severe evidence whose exact level flickers must not leave the display low."""
    sm = TemporalSmoother(raw(grade_min_s=0.5))
    feed(sm, 0, 2000, 40, score_cum(0.9, 0.8))
    assert sm.state().grade == 2
    iii, iv = score_cum(0.95, 0.9, 0.8), score_cum(0.95, 0.9, 0.8, 0.7)
    states = [sm.update(t * MS, iii if (t // 40) % 2 else iv) for t in range(2000, 4000, 40)]
    by_t = {s.t_ns // MS: s for s in states}
    assert by_t[2480].grade == 2
    assert by_t[2520].grade == 3  # candidate >= III for 500 ms, never IV for 500 ms
    assert all(s.grade == 3 for s in states if s.t_ns >= 2520 * MS)
    # Falling works the same way: <= I (flickering 0/I) for 500 ms lowers it to I.
    low = [
        sm.update(t * MS, score_cum(0.6) if (t // 40) % 2 else score_cum(0.45))
        for t in range(4000, 5000, 40)
    ]
    by_t = {s.t_ns // MS: s for s in low}
    assert by_t[4480].grade == 3
    assert by_t[4520].grade == 1


def test_grade_from_starting_is_the_level_held_throughout() -> None:
    sm = TemporalSmoother(raw(grade_min_s=0.5, onset_min_s=0.3))
    hi, lo = score_cum(0.9, 0.8, 0.7), score_cum(0.9, 0.8)
    states = [sm.update(t * MS, hi if (t // 40) % 2 else lo) for t in range(0, 1000, 40)]
    assert all(s.grade is None for s in states if s.t_ns < 320 * MS)
    # Alert on at 0.3 s with no stable grade yet: I; then II, held >= II from the start.
    assert {s.grade for s in states if 320 * MS <= s.t_ns < 520 * MS} == {1}
    assert {s.grade for s in states if s.t_ns >= 520 * MS} == {2}


def test_grade_change_needs_grade_min_s_and_best_evidence_is_strongest_frame() -> None:
    sm = TemporalSmoother(raw(grade_min_s=0.5))
    feed(sm, 0, 2000, 40, score_cum(0.9, 0.8))
    assert sm.state().grade == 2
    # A grade-III stretch shorter than grade_min_s leaves the display at II.
    short = feed(sm, 2000, 2400, 40, score_cum(0.9, 0.8, 0.7))
    assert all(s.grade == 2 for s in short)
    feed(sm, 2400, 3000, 40, score_cum(0.9, 0.8))
    long = feed(sm, 3000, 4000, 40, score_cum(0.9, 0.8, 0.7))
    by_t = {s.t_ns // MS: s for s in long}
    assert by_t[3480].grade == 2
    assert by_t[3520].grade == 3  # first frame >= 3000 + 500 ms
    sm.update(4000 * MS, score_cum(0.95, 0.9, 0.85), seq=4242)
    feed(sm, 4040, 5000, 40, score_cum(0.9, 0.8, 0.7))
    best = sm.summary().best_evidence
    assert best is not None
    assert (best.seq, best.grade) == (4242, 3)
    assert best.p == pytest.approx(0.85)
