"""Single-process mode over a short phantom clip file, a fake engine and callback consumers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pipeline_fakes import FakeEngine, write_clip

from pivh_live.errors import MediaError
from pivh_live.frames import Frame, Roi
from pivh_live.pipeline import CallbackConsumer, InferenceStage, RegionStage, SinglePipeline
from pivh_live.pipeline.results import PipelineStatus
from pivh_live.sources import ResilientSource, SourceStatus
from pivh_live.sources.files import FileSource

N_FRAMES = 16


@pytest.fixture(scope="module")
def phantom_clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    from pivh_live.phantom import render_clip, sample_case

    spec = sample_case(np.random.default_rng(11), n_frames=N_FRAMES, grade=3)
    clip = render_clip(spec)
    path = write_clip(tmp_path_factory.mktemp("clip") / "phantom.mkv", clip.frames, fps=25.0)
    return path, clip.frames


def _pipeline(
    consumers, batch: int = 1, roi: Roi | None = None, time_base: str = "capture"
) -> SinglePipeline:
    inference = InferenceStage(FakeEngine(), time_base=time_base)
    return SinglePipeline(RegionStage(roi=roi, auto=False), inference, consumers, batch=batch)


def _collect(**kwargs):
    got = []
    consumer = CallbackConsumer(lambda region, result: got.append((region, result)), **kwargs)
    return got, consumer


def test_every_frame_gets_a_result_in_order(phantom_clip) -> None:
    path, frames = phantom_clip
    got, consumer = _collect(needs_frames=True)
    pipeline = _pipeline([consumer])
    with FileSource(str(path), path, pace="fast") as source:
        stats = pipeline.run(source)
    assert stats.frames == stats.regions == stats.results == N_FRAMES
    assert [r.seq for _, r in got] == list(range(N_FRAMES))
    assert [r.media_time_s for _, r in got] == pytest.approx(np.arange(N_FRAMES) / 25.0)
    for (region, result), original in zip(got, frames, strict=True):
        assert region is not None and region.seq == result.seq
        np.testing.assert_array_equal(region.image, original)  # FFV1 is lossless
        order = ["capture", "crop", "preprocess", "infer", "smooth"]
        assert list(result.stamps) == order
        values = [result.stamps[k] for k in order]
        assert values == sorted(values) and values[0] == result.t_capture_ns
    captures = [r.t_capture_ns for _, r in got]
    assert captures == sorted(captures)


def test_batch_and_prefetch_give_the_same_results(phantom_clip) -> None:
    path, _ = phantom_clip
    runs = []
    for batch, prefetch in ((1, 0), (5, 4)):
        got, consumer = _collect()
        with FileSource(str(path), path, pace="fast") as source:
            # Media time: capture stamps differ between runs, the decisions must not.
            _pipeline([consumer], batch=batch, time_base="media").run(source, prefetch=prefetch)
        runs.append(got)
    assert [r.state for _, r in runs[0]] == [r.state for _, r in runs[1]]
    assert all(region is None for region, _ in runs[1])  # the consumer asked for no frames


def test_max_frames_and_stop(phantom_clip) -> None:
    path, _ = phantom_clip
    got, consumer = _collect()
    with FileSource(str(path), path, pace="fast") as source:
        stats = _pipeline([consumer]).run(source, max_frames=5)
    assert stats.results == 5
    got.clear()
    with FileSource(str(path), path, pace="fast") as source:
        _pipeline([consumer]).run(source, stop=lambda: len(got) >= 3)
    assert len(got) == 3


def test_reader_errors_reach_the_caller_with_prefetch() -> None:
    class Broken:
        def __init__(self) -> None:
            self.n = 0

        def read(self):
            self.n += 1
            if self.n > 2:
                raise MediaError("clip.mp4 ends inside frame 2; it is truncated")
            return Frame(self.n, self.n, self.n / 25, np.full((8, 8), 90, np.uint8))

    got, consumer = _collect()
    with pytest.raises(MediaError, match="truncated"):
        _pipeline([consumer]).run(Broken(), prefetch=2)
    assert len(got) == 2


def test_source_statuses_reach_consumers_as_pipeline_status() -> None:
    items = iter([
        SourceStatus(1, "no_signal", "capture device gone"),
        Frame(0, 5, 0.0, np.full((8, 8), 90, np.uint8)),
        None,
    ])  # fmt: skip

    class Scripted:
        def read(self):
            return next(items)

    statuses: list[PipelineStatus] = []
    got, _ = _collect()
    consumer = CallbackConsumer(lambda region, result: got.append(result), statuses.append)
    stats = _pipeline([consumer]).run(Scripted())
    assert [s.source_state for s in statuses] == ["no_signal"]
    assert (
        statuses[0].display_status == "no_signal"
        and statuses[0].source_message == "capture device gone"
    )
    assert stats.statuses == 1 and stats.results == 1 and len(got) == 1


def test_resilient_source_over_a_file_ends(phantom_clip) -> None:
    path, _ = phantom_clip
    got, consumer = _collect()
    source = ResilientSource(lambda: FileSource(str(path), path, pace="fast"))
    stats = _pipeline([consumer], roi=Roi(0, 0, 40, 30)).run(source)
    source.close()
    assert stats.results == N_FRAMES and stats.statuses == 1  # "signal" before the first frame
    assert all(r.roi == Roi(0, 0, 40, 30) for _, r in got)


def test_run_single_is_the_live_single_process_mode(phantom_clip) -> None:
    from pivh_live.pipeline.config import LiveConfig
    from pivh_live.pipeline.live import run_single

    path, _ = phantom_clip
    got, consumer = _collect()
    config = LiveConfig(
        source=f"file:{path}?pace=fast", engine_factory="pipeline_fakes:make_fake_engine"
    )
    report = run_single(config, [consumer])
    assert report.reason == "source ended" and report.results == len(got) > 0
    # Auto-detection needs a few frames of change before it sends anything.
    assert got[-1][1].seq == N_FRAMES - 1
    # The first item is the "signal" status: stopped before any frame was scored.
    stopped = run_single(config, [consumer], stop=lambda: True)
    assert stopped.reason == "stopped" and stopped.results == 0
