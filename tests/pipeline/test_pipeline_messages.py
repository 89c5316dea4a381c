"""RegionFrame / FrameResult / PipelineStatus <-> transport messages, through encode/decode."""

from __future__ import annotations

import numpy as np
import pytest
from pipeline_fakes import FakeEngine, grade_frames

from pivh_live.frames import Roi
from pivh_live.pipeline import InferenceStage
from pivh_live.pipeline.messages import (
    heartbeat_message,
    region_from_message,
    region_to_message,
    result_from_message,
    result_to_message,
    status_from_message,
    status_to_message,
)
from pivh_live.pipeline.results import PipelineStatus, RegionFrame
from pivh_live.transport import Message, TransportError, decode, encode


def _wire(msg: Message) -> Message:
    header, array = encode(msg)
    return decode([header, np.array(array, copy=True).data])


def _results(n: int = 30):
    frames = grade_frames([0] * 5 + [4] * (n - 5), seed=2)
    stage = InferenceStage(FakeEngine())
    regions = [
        RegionFrame(i, 10**9 + i * 4 * 10**7, i * 0.04, f, Roi(3, 4, 48, 48), {"capture": 10**9})
        for i, f in enumerate(frames)
    ]
    return regions, [stage.process(r) for r in regions]


def test_region_round_trip() -> None:
    regions, _ = _results(2)
    back = region_from_message(_wire(region_to_message(regions[1])))
    assert (back.seq, back.t_capture_ns, back.media_time_s, back.roi) == (
        1,
        10**9 + 4 * 10**7,
        0.04,
        Roi(3, 4, 48, 48),
    )
    np.testing.assert_array_equal(back.image, regions[1].image)
    assert back.stamps["capture"] == 10**9


def test_result_round_trip_is_exact() -> None:
    _, results = _results()
    for res in (results[0], results[-1]):  # starting, and alerting with best evidence
        msg = result_to_message(res)
        assert msg.kind == "result" and msg.array.dtype == np.float32
        back = result_from_message(_wire(msg))
        assert back.state == res.state
        assert (back.seq, back.t_capture_ns, back.media_time_s) == (
            res.seq,
            res.t_capture_ns,
            res.media_time_s,
        )
        assert back.motion == res.motion and back.roi == res.roi
        np.testing.assert_array_equal(back.score.grade_probs, res.score.grade_probs)
        np.testing.assert_array_equal(back.score.heatmap, res.score.heatmap)
        assert back.score.p_valid == res.score.p_valid
        assert dict(back.stamps) == dict(res.stamps)
    assert results[-1].state.alert and results[-1].state.best_evidence is not None


def test_status_round_trip_and_display_status() -> None:
    status = PipelineStatus(
        5, "signal", "receiving 48x48", (("capture", "running"), ("inference", "restarting")), 2
    )
    msg = status_to_message(status, seq=7)
    assert msg.metadata["display_status"] == "restarting"
    assert status_from_message(_wire(msg)) == status
    assert PipelineStatus(0, "no_signal").display_status == "no_signal"
    assert PipelineStatus(0, "signal", stages=(("a", "starting"),)).display_status == "starting"
    assert PipelineStatus(0, "signal", stages=(("a", "running"),)).display_status is None


@pytest.mark.parametrize(
    "change",
    [
        {"grade_probs": [0.5, 0.5]},
        {"p_valid": "high"},
        {"p_valid": float("nan")},
        {"motion": True},
        {"roi": [1, 2, 3]},
        {"state": None},
        {"state": {"status": "dancing"}},
    ],
)
def test_malformed_results_raise_transport_error(change: dict) -> None:
    _, results = _results(6)
    msg = result_to_message(results[-1])
    meta = {**msg.metadata, **change}
    bad = Message("result", msg.seq, msg.t_capture_ns, msg.array, msg.stamps, {})
    object.__setattr__(bad, "metadata", meta)
    with pytest.raises(TransportError):
        result_from_message(bad)


def test_wrong_kind_and_dtype_are_rejected() -> None:
    regions, _ = _results(2)
    with pytest.raises(TransportError, match="expected a 'result'"):
        result_from_message(region_to_message(regions[0]))
    with pytest.raises(TransportError, match="uint8"):
        region_from_message(
            Message("frame", 0, 0, np.zeros((4, 4), np.float32), {}, {"media_time_s": 0.0})
        )
    beat = heartbeat_message("capture", 3, {"frames": 9})
    assert beat.kind == "heartbeat" and beat.metadata == {"stage": "capture", "frames": 9}
