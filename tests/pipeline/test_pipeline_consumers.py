"""Consumers: the frames.jsonl writer, the status reporter, the overlay video."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pipeline_fakes import FakeEngine, grade_frames

from pivh_live.errors import RecordingError
from pivh_live.frames import Roi
from pivh_live.media import read_frames
from pivh_live.pipeline import InferenceStage, JsonlResultWriter, StatusReporter, frame_record
from pivh_live.pipeline.consumers import OverlayVideoWriter
from pivh_live.pipeline.results import FrameResult, PipelineStatus, RegionFrame


def _run(grades: list[int]) -> tuple[list[RegionFrame], list[FrameResult]]:
    frames = grade_frames(grades, seed=4)
    stage = InferenceStage(FakeEngine())
    regions = [
        RegionFrame(
            i,
            10**9 + i * 40_000_000,
            i / 25,
            f,
            Roi(0, 0, 48, 48),
            {"capture": 10**9 + i * 40_000_000},
        )
        for i, f in enumerate(frames)
    ]
    return regions, [stage.process(r) for r in regions]


def test_frame_record_fields() -> None:
    _, results = _run([-1] * 8 + [3] * 20)
    first, last = frame_record(results[0]), frame_record(results[-1], live=True)
    assert first["status"] == "starting" and first["grade"] == 0 and first["valid"] is False
    assert first["motion"] is None
    assert last["status"] == "scoring" and last["alert"] is True and 1 <= last["grade"] <= 4
    assert last["p_pivh"] == pytest.approx(1 - last["grade_probs"][0], abs=1e-6)
    assert last["p_pivh_smoothed"] == results[-1].state.p_pivh
    assert last["t_capture_ns"] == results[-1].t_capture_ns
    assert last["latency_ms"] == pytest.approx((results[-1].latency_ns or 0) / 1e6, abs=1e-3)
    assert last["stamps_ms"]["capture"] == 0.0
    assert last["stamps_ms"]["smooth"] == last["latency_ms"]
    assert "t_capture_ns" not in first and "stamps_ms" not in first


def test_jsonl_writer_writes_one_line_per_result(tmp_path: Path) -> None:
    regions, results = _run([0] * 30)
    writer = JsonlResultWriter(tmp_path / "sub" / "frames.jsonl", flush_every=7)
    for region, res in zip(regions, results, strict=True):
        writer.on_result(region, res)
    # Flushed in chunks while running, so a live session can be followed.
    assert len((tmp_path / "sub" / "frames.jsonl").read_text().splitlines()) == 28
    writer.close()
    lines = (tmp_path / "sub" / "frames.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [frame_record(r) for r in results]
    writer.close()  # idempotent


def test_jsonl_writer_reports_an_unwritable_directory(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(RecordingError, match="cannot write"):
        JsonlResultWriter(tmp_path / "file" / "frames.jsonl")


def test_status_reporter_rates_latency_and_line() -> None:
    _, results = _run([0] * 3 + [4] * 27)
    now = [0]
    lines: list[str] = []
    reporter = StatusReporter(
        1.0, clock=lambda: now[0], drops=lambda: {"consumer": 2}, emit=lines.append
    )
    for i, res in enumerate(results):
        now[0] = res.t_capture_ns + (10 + i) * 1_000_000  # 10, 11, ... ms after capture
        reporter.on_result(None, res)
    stats = reporter.stats(now[0])
    assert stats.results == len(results)
    assert stats.fps == pytest.approx(1000 / 41)  # arrivals 40 ms apart plus 1 ms more latency
    assert stats.latency_p50_ms == pytest.approx(
        np.percentile(np.arange(10, 10 + len(results)), 50)
    )
    assert stats.alert and stats.grade == results[-1].state.grade
    assert lines, "a line is due after 1 s of results"
    assert "fps" in lines[0] and "drops consumer=2" in lines[0]
    reporter.on_status(PipelineStatus(0, "no_signal", "gone"))
    assert reporter.stats(now[0]).status == "no_signal"


def test_status_reporter_ticks_without_results() -> None:
    now = [0]
    lines: list[str] = []
    reporter = StatusReporter(2.0, clock=lambda: now[0], emit=lines.append)
    reporter.tick()
    now[0] = 1_999_999_999
    reporter.tick()
    assert lines == []
    now[0] = 2_000_000_000
    reporter.tick()
    assert lines == [
        "-- fps | latency p50 -- ms p99 -- ms | alert off | grade - | waiting | drops 0"
    ]


def test_overlay_video_has_one_frame_per_result(tmp_path: Path) -> None:
    regions, results = _run([0] * 5 + [4] * 10)
    writer = OverlayVideoWriter(tmp_path / "overlay.mp4", 25.0, status=lambda r: f"frame {r.seq}")
    for region, res in zip(regions, results, strict=True):
        writer.on_result(region, res)
    writer.on_result(None, results[0])  # no region: nothing to draw
    writer.close()
    frames, fps = read_frames(tmp_path / "overlay.mp4")
    assert frames.shape == (15, 48, 48) and fps == pytest.approx(25.0)
