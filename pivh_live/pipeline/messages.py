"""RegionFrame / FrameResult / status <-> transport `Message` (formats in docs/pipeline.md).

Only this module knows how pipeline objects are laid out in messages; the
stage processes call these functions and never build headers themselves.
Every ``*_from_message`` raises `TransportError` (a `PivhError`) for a
message that does not follow the format, so a bad peer is counted and
skipped, never crashes a stage.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from pivh_live.frames import N_GRADES, Roi, Score
from pivh_live.pipeline.results import FrameResult, PipelineStatus, RegionFrame
from pivh_live.smoothing import STATUSES, Evidence, LiveState
from pivh_live.transport import Message, TransportError

FRAME_KIND = "frame"
RESULT_KIND = "result"
STATUS_KIND = "status"
HEARTBEAT_KIND = "heartbeat"
_EMPTY = np.zeros(0, np.uint8)


def region_to_message(region: RegionFrame) -> Message:
    roi = region.roi
    meta = {"media_time_s": float(region.media_time_s), "roi": [roi.x, roi.y, roi.w, roi.h]}
    return Message(FRAME_KIND, region.seq, region.t_capture_ns, region.image, region.stamps, meta)


def region_from_message(msg: Message) -> RegionFrame:
    _expect(msg, FRAME_KIND)
    if msg.array.ndim not in (2, 3) or msg.array.dtype != np.uint8:
        raise TransportError(f"frame {msg.seq} must be uint8 (H, W[, C]), got {msg.shape}")
    meta = msg.metadata
    return RegionFrame(
        msg.seq,
        msg.t_capture_ns,
        _number(meta, "media_time_s", msg.seq),
        msg.array,
        _roi(meta.get("roi"), msg.seq) or Roi(0, 0, msg.array.shape[1], msg.array.shape[0]),
        msg.stamps,
    )


def result_to_message(result: FrameResult) -> Message:
    s, score = result.state, result.score
    best = s.best_evidence
    meta = {
        "media_time_s": float(result.media_time_s),
        "grade_probs": [float(p) for p in score.grade_probs],
        "p_valid": float(score.p_valid),
        "motion": result.motion,
        "roi": None
        if result.roi is None
        else [result.roi.x, result.roi.y, result.roi.w, result.roi.h],
        "state": {
            "t_ns": s.t_ns,
            "seq": s.seq,
            "status": s.status,
            "alert": s.alert,
            "grade": s.grade,
            "p_pivh": s.p_pivh,
            "p_severe": s.p_severe,
            "grade_probs": list(s.grade_probs),
            "valid": s.valid,
            "alert_since_ns": s.alert_since_ns,
            "worst_grade": s.worst_grade,
            "worst_grade_t_ns": s.worst_grade_t_ns,
            "n_alert_onsets": s.n_alert_onsets,
            "best_evidence": None
            if best is None
            else {"seq": best.seq, "t_ns": best.t_ns, "grade": best.grade, "p": best.p},
        },
    }
    heatmap = np.asarray(score.heatmap, dtype=np.float32)
    return Message(RESULT_KIND, result.seq, result.t_capture_ns, heatmap, result.stamps, meta)


def result_from_message(msg: Message) -> FrameResult:
    _expect(msg, RESULT_KIND)
    meta, seq = msg.metadata, msg.seq
    probs = meta.get("grade_probs")
    if not isinstance(probs, list) or len(probs) != N_GRADES:
        raise TransportError(f"result {seq}: grade_probs must be a list of {N_GRADES} numbers")
    if msg.array.dtype != np.float32 or msg.array.ndim != 2:
        raise TransportError(f"result {seq}: heatmap must be float32 (H, W), got {msg.shape}")
    score = Score(
        grade_probs=np.array([_finite(p, "grade_probs", seq) for p in probs], dtype=np.float32),
        p_valid=_number(meta, "p_valid", seq),
        heatmap=msg.array,
    )
    motion = meta.get("motion")
    return FrameResult(
        seq,
        msg.t_capture_ns,
        _number(meta, "media_time_s", seq),
        score,
        _state(meta.get("state"), seq, msg.t_capture_ns),
        None if motion is None else _finite(motion, "motion", seq),
        _roi(meta.get("roi"), seq),
        msg.stamps,
    )


def status_to_message(status: PipelineStatus, seq: int = 0) -> Message:
    meta = {
        "source_state": status.source_state,
        "source_message": status.source_message,
        "stages": [[name, state] for name, state in status.stages],
        "restarts": status.restarts,
        "display_status": status.display_status,
    }
    return Message(STATUS_KIND, seq, status.t_ns, _EMPTY, {}, meta)


def status_from_message(msg: Message) -> PipelineStatus:
    _expect(msg, STATUS_KIND)
    meta = msg.metadata
    try:
        stages = tuple((str(n), str(s)) for n, s in meta.get("stages", []))
        return PipelineStatus(
            msg.t_capture_ns,
            str(meta.get("source_state", "unknown")),
            str(meta.get("source_message", "")),
            stages,
            int(meta.get("restarts", 0)),
        )
    except (TypeError, ValueError) as exc:
        raise TransportError(f"status message {msg.seq} is malformed: {exc}") from None


def heartbeat_message(stage: str, seq: int, info: Mapping[str, Any]) -> Message:
    """What a stage process pushes to the supervisor about once a second."""
    return Message(HEARTBEAT_KIND, seq, time.monotonic_ns(), _EMPTY, {}, {"stage": stage, **info})


def _expect(msg: Message, kind: str) -> None:
    if msg.kind != kind:
        raise TransportError(f"expected a {kind!r} message, got {msg.kind!r}")


def _finite(value: object, name: str, seq: int) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TransportError(f"message {seq}: {name} must be a finite number, got {value!r}")
    return float(value)


def _number(meta: Mapping[str, Any], name: str, seq: int) -> float:
    return _finite(meta.get(name), name, seq)


def _int_or_none(value: object, name: str, seq: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TransportError(f"message {seq}: {name} must be an integer or null, got {value!r}")
    return value


def _roi(value: object, seq: int) -> Roi | None:
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) != 4
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
    ):
        raise TransportError(f"message {seq}: roi must be [x, y, w, h] non-negative integers")
    return Roi(*value)


def _state(value: object, seq: int, t_ns: int) -> LiveState:
    if not isinstance(value, dict):
        raise TransportError(f"result {seq}: state must be an object")
    status = value.get("status")
    if status not in STATUSES:
        raise TransportError(f"result {seq}: state.status must be one of {STATUSES}")
    probs = value.get("grade_probs")
    if not isinstance(probs, list) or len(probs) != N_GRADES:
        raise TransportError(f"result {seq}: state.grade_probs must be {N_GRADES} numbers")
    grade = _int_or_none(value.get("grade"), "state.grade", seq)
    if grade is not None and not 0 <= grade < N_GRADES:
        raise TransportError(f"result {seq}: state.grade must be 0-4 or null")
    best = value.get("best_evidence")
    evidence = None
    if best is not None:
        if not isinstance(best, dict):
            raise TransportError(f"result {seq}: state.best_evidence must be an object or null")
        evidence = Evidence(
            _int_or_none(best.get("seq"), "best_evidence.seq", seq) or 0,
            _int_or_none(best.get("t_ns"), "best_evidence.t_ns", seq) or 0,
            _int_or_none(best.get("grade"), "best_evidence.grade", seq) or 0,
            _finite(best.get("p"), "best_evidence.p", seq),
        )
    state_t = _int_or_none(value.get("t_ns"), "state.t_ns", seq)
    state_seq = _int_or_none(value.get("seq"), "state.seq", seq)
    return LiveState(
        t_ns=t_ns if state_t is None else state_t,
        seq=seq if state_seq is None else state_seq,
        status=status,
        alert=_bool(value.get("alert"), "state.alert", seq),
        grade=grade,
        p_pivh=_finite(value.get("p_pivh"), "state.p_pivh", seq),
        p_severe=_finite(value.get("p_severe"), "state.p_severe", seq),
        grade_probs=tuple(_finite(p, "state.grade_probs", seq) for p in probs),
        valid=_bool(value.get("valid"), "state.valid", seq),
        alert_since_ns=_int_or_none(value.get("alert_since_ns"), "state.alert_since_ns", seq),
        worst_grade=_int_or_none(value.get("worst_grade"), "state.worst_grade", seq) or 0,
        worst_grade_t_ns=_int_or_none(value.get("worst_grade_t_ns"), "state.worst_grade_t_ns", seq),
        best_evidence=evidence,
        n_alert_onsets=_int_or_none(value.get("n_alert_onsets"), "state.n_alert_onsets", seq) or 0,
    )


def _bool(value: object, name: str, seq: int) -> bool:
    if not isinstance(value, bool):
        raise TransportError(f"message {seq}: {name} must be true or false, got {value!r}")
    return value
