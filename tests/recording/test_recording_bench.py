"""The recorder throughput check runs end to end and counts every frame."""

from __future__ import annotations

import pytest

from pivh_live.recording.bench import bench_recorder


@pytest.mark.slow
def test_bench_counts_frames_and_drops() -> None:
    r = bench_recorder(frames=60, fps=30.0, size=(160, 120))
    assert (r.frames, r.video_frames, r.journal_lines) == (60, 60, 60)
    assert r.capture_dropped == r.missed == r.queue_dropped == 0
    assert r.write_p50_ms is not None and 0 < r.write_p50_ms <= r.write_p99_ms <= r.write_max_ms
    assert r.seconds >= 59 / 30 and r.cpu_percent > 0 and r.mb_per_hour > 0
