"""The plain stage classes: region crop, inference + smoothing, overlay."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from pipeline_fakes import FakeEngine, grade_frames

from pivh_live.evaluation.evaluate import frame_motion
from pivh_live.frames import Frame, Roi
from pivh_live.pipeline import InferenceStage, OverlayStage, RegionStage, region_motion
from pivh_live.pipeline.results import RegionFrame
from pivh_live.profiles import save_profile
from pivh_live.smoothing import SmoothingConfig, TemporalSmoother


def _clock(start: int = 1_000, step: int = 7):
    counter = itertools.count(start, step)
    return lambda: next(counter)


def _frame(image: np.ndarray, seq: int = 0, t: int = 10, media: float = 0.0) -> Frame:
    return Frame(seq, t, media, image)


def _screen(h: int = 90, w: int = 160, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w), dtype=np.uint8)


def test_fixed_roi_sends_a_copy_of_the_region_only() -> None:
    screen = _screen()
    stage = RegionStage(roi=Roi(10, 20, 50, 40), clock=_clock())
    rf = stage.process(_frame(screen, seq=3, t=500, media=1.5))
    assert rf is not None
    np.testing.assert_array_equal(rf.image, screen[20:60, 10:60])
    assert not np.shares_memory(rf.image, screen)
    assert rf.image.flags.c_contiguous
    assert (rf.seq, rf.t_capture_ns, rf.media_time_s, rf.roi) == (3, 500, 1.5, Roi(10, 20, 50, 40))
    assert dict(rf.stamps) == {"capture": 500, "crop": 1_000}


def test_roi_outside_the_frame_sends_nothing_and_counts() -> None:
    stage = RegionStage(roi=Roi(500, 500, 10, 10))
    assert stage.process(_frame(_screen())) is None
    assert stage.skipped == 1


def test_roi_partly_outside_is_clipped() -> None:
    stage = RegionStage(roi=Roi(150, 80, 50, 50))
    rf = stage.process(_frame(_screen()))
    assert rf is not None and rf.roi == Roi(150, 80, 10, 10) and rf.image.shape == (10, 10)


def test_profile_roi_per_resolution_then_detection(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    save_profile("scanner-a", (160, 90), Roi(4, 5, 30, 20))

    class Detector:
        def __init__(self) -> None:
            self.answers = [None, Roi(1, 1, 8, 8)]

        def update(self, image: np.ndarray) -> Roi | None:
            return self.answers.pop(0)

    stage = RegionStage(profile="scanner-a", detector=Detector())  # type: ignore[arg-type]
    rf = stage.process(_frame(_screen(90, 160)))
    assert rf is not None and rf.roi == Roi(4, 5, 30, 20)
    # Another resolution is not in the profile: detection decides, nothing until it has an answer.
    assert stage.process(_frame(_screen(60, 80))) is None
    rf = stage.process(_frame(_screen(60, 80)))
    assert rf is not None and rf.roi == Roi(1, 1, 8, 8)
    assert stage.skipped == 1


def test_without_roi_or_detection_the_whole_frame_is_the_region() -> None:
    screen = _screen()
    rf = RegionStage(auto=False).process(_frame(screen))
    assert rf is not None and rf.roi == Roi(0, 0, 160, 90)
    np.testing.assert_array_equal(rf.image, screen)
    assert not np.shares_memory(rf.image, screen)


def test_region_motion_is_evaluation_frame_motion_to_the_bit() -> None:
    frames = np.random.default_rng(3).integers(0, 256, (5, 33, 47), dtype=np.uint8)
    expected = frame_motion(frames)
    got = [region_motion(frames[i], frames[i - 1] if i else None) for i in range(5)]
    assert got[0] is None and np.isnan(expected[0])
    assert got[1:] == expected[1:].tolist()
    assert region_motion(frames[0], frames[1][:, :40]) is None


def _regions(grades: list[int], fps: float = 25.0) -> list[RegionFrame]:
    frames = grade_frames(grades, seed=1)
    return [
        RegionFrame(i, 1_000_000 + i * 40_000_000, i / fps, f, Roi(0, 0, 48, 48), {"capture": 0})
        for i, f in enumerate(frames)
    ]


def test_inference_stage_equals_engine_plus_smoother_by_hand() -> None:
    engine = FakeEngine()
    config = SmoothingConfig()
    regions = _regions([0] * 5 + [3] * 20 + [-1] * 10)
    stage = InferenceStage(engine, config)
    results = [stage.process(r) for r in regions]

    smoother = TemporalSmoother(config)
    previous = None
    for r, res in zip(regions, results, strict=True):
        score = FakeEngine().score(r.image)
        motion = region_motion(r.image, previous)
        previous = r.image
        expected = smoother.update(r.t_capture_ns, score, motion, r.seq)
        assert res.state == expected
        assert res.motion == motion
        np.testing.assert_array_equal(res.score.grade_probs, score.grade_probs)
        assert (res.seq, res.t_capture_ns, res.media_time_s) == (
            r.seq,
            r.t_capture_ns,
            r.media_time_s,
        )
    assert any(r.state.alert for r in results)
    assert results[-1].state.status == "no_valid_image"


def test_batching_does_not_change_results() -> None:
    regions = _regions([0] * 4 + [2] * 15 + [4] * 9)
    stage = InferenceStage(FakeEngine())
    batched = stage.process_batch(regions[:10]) + stage.process_batch(regions[10:])
    single = InferenceStage(FakeEngine())
    seq = [single.process(r) for r in regions]
    assert [r.state for r in batched] == [r.state for r in seq]
    assert [r.motion for r in batched] == [r.motion for r in seq]
    assert len(batched) == len(regions)


def test_stamps_are_in_stage_order() -> None:
    stage = InferenceStage(FakeEngine(), clock=_clock(5_000, 3))
    region = _regions([1])[0]
    region = RegionFrame(0, 100, 0.0, region.image, region.roi, {"capture": 100, "crop": 200})
    res = stage.process(region)
    names = ["capture", "crop", "preprocess", "infer", "smooth"]
    assert list(res.stamps) == names
    values = [res.stamps[n] for n in names]
    assert values == sorted(values) and values[2:] == [5_000, 5_003, 5_006]
    assert res.latency_ns == 5_006 - 100


def test_media_time_base_feeds_media_time_to_the_smoother() -> None:
    regions = _regions([0, 0, 0])
    stage = InferenceStage(FakeEngine(), time_base="media")
    states = [stage.process(r).state for r in regions]
    assert [s.t_ns for s in states] == [0, 40_000_000, 80_000_000]
    with pytest.raises(ValueError, match="time_base"):
        InferenceStage(FakeEngine(), time_base="wall")


def test_time_going_back_restarts_smoothing_instead_of_failing() -> None:
    stage = InferenceStage(FakeEngine())
    regions = _regions([2] * 3)
    stage.process(regions[2])
    state = stage.process(regions[0]).state
    assert state.status == "starting" and state.t_ns == regions[0].t_capture_ns


def test_overlay_stage_draws_on_a_copy() -> None:
    regions = _regions([0] * 3 + [4] * 20)
    stage = InferenceStage(FakeEngine())
    results = [stage.process(r) for r in regions]
    region = regions[-1]
    before = region.image.copy()
    image = OverlayStage().render(region, results[-1], status_line="25 fps")
    assert image.shape == (48, 48, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(region.image, before)
    assert not np.array_equal(image[..., 0], region.image)  # something was drawn
    blank = OverlayStage().render(region, None, display_status="no_signal")
    assert blank.shape == (48, 48, 3)


def test_background_detection_is_chosen_by_flag_and_closed_with_the_stage() -> None:
    from pivh_live.region import BackgroundRegionDetector, RegionDetector

    plain = RegionStage()
    assert type(plain._detector) is RegionDetector
    plain.close()  # nothing to stop
    stage = RegionStage(background=True)
    detector = stage._detector
    assert isinstance(detector, BackgroundRegionDetector)
    stage.close()
    assert detector._closed
    assert RegionStage(background=True, auto=False)._detector is None


def test_inference_stage_preprocesses_with_the_bundle_fit() -> None:
    import dataclasses

    from pipeline_fakes import SIZE, fake_bundle

    from pivh_live.preprocess import preprocess

    class Recording(FakeEngine):
        def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
            self.seen = batch.copy()
            return super().infer(batch)

    region = _screen(40, 100, seed=2)
    rf = RegionFrame(0, 10, 0.0, region, Roi(0, 0, 100, 40))
    for fit in ("letterbox", "stretch"):
        engine = Recording(dataclasses.replace(fake_bundle(), fit=fit))
        InferenceStage(engine, SmoothingConfig()).process(rf)
        np.testing.assert_array_equal(engine.seen[0], preprocess(region, SIZE, fit=fit))
    assert engine.seen[0, 0, 0].min() > 0  # stretched: no zero padding rows
