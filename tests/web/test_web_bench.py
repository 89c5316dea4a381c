"""The display benchmark's bookkeeping on a tiny run (the numbers are for docs/web.md)."""

from __future__ import annotations

from pivh_live.web.bench import run


def test_bench_counts_calls_encodes_and_client_frames() -> None:
    result = run(fps=100.0, seconds=0.5, clients=1, size=(160, 120), max_fps=1000.0)
    assert result["frames"] == 50 and result["clients"] == 1
    us = result["on_result_us"]
    assert 0 < us["median"] <= us["p99"] <= us["max"]
    assert 0 < result["frames_per_client"][0] <= result["jpeg_encodes"] <= 50
