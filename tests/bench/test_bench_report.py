import csv

import pytest

from pivh_live.bench.report import (
    CPU_TARGETS,
    HOLOSCAN_REFERENCE,
    aggregate,
    check_targets,
    format_summary,
    holoscan_x86_check,
    ratios,
    run_summary,
    write_frames_csv,
)
from pivh_live.bench.stats import latency_stats

MS = 1_000_000


def _recs(n, lat_ms, period_ms=1000 / 60, start_seq=0, skip=()):
    out = []
    for i in range(n):
        if i in skip:
            continue
        cap = round(i * period_ms * MS)
        out.append((start_seq + i, {"capture": cap, "crop": cap + MS,
                                    "overlay": cap + round(lat_ms * MS)}))  # fmt: skip
    return out


def _stats(median, p99):
    s = latency_stats([1.0, 2.0, 3.0], trim=0)
    return {**s, "median": median, "p99": p99}


def test_ratios_are_pipeline_over_baseline_at_median_and_p99():
    r = ratios(_stats(12.0, 30.0), _stats(3.0, 6.0))
    assert r["median"] == pytest.approx(4.0)
    assert r["p99"] == pytest.approx(5.0)
    assert r["pipeline_ms"] == {"median": 12.0, "p99": 30.0}
    assert r["baseline_ms"] == {"median": 3.0, "p99": 6.0}
    assert ratios(_stats(1.0, 1.0), _stats(0.0, 2.0))["median"] is None


def test_run_summary_counts_drops_in_the_window():
    # 60 fps, frames 30 and 31 never scored (newest-wins), nothing else lost.
    recs = _recs(100, 8.0, skip=(30, 31))
    s = run_summary(recs, {"source_dropped": 0, "inference_dropped": 2}, 60.0, trim=10)
    assert s["kept"] == 98 - 20
    assert s["drops"]["unseen_in_window"] == 2
    assert s["drops"]["source_in_window"] == 0
    assert s["drops"]["live_in_window"] == 2
    assert s["end_to_end_ms"]["median"] == pytest.approx(8.0)
    assert s["throughput"]["capture_fps"] == pytest.approx(60.0, rel=1e-3)


def test_targets_pass_and_fail_as_measured():
    good = run_summary(_recs(200, 9.0), {}, 60.0, trim=10)
    engine = {"latency_ms": {**latency_stats([1.0, 1.0, 1.0], trim=0)}}
    agg = aggregate([good], [_recs(200, 9.0)], trim=10)
    t = check_targets(agg, engine, 60.0)
    assert t["applies"] and t["all_pass"]
    assert t["e2e_p99_ms"] == {"value": pytest.approx(9.0), "limit": 15.0, "pass": True}
    assert t["overhead_p99_ms"]["value"] == pytest.approx(8.0)
    slow = run_summary(_recs(200, 20.0), {}, 60.0, trim=10)
    t = check_targets(aggregate([slow], [_recs(200, 20.0)], trim=10), engine, 60.0)
    assert not t["e2e_p99_ms"]["pass"] and not t["overhead_p99_ms"]["pass"]
    assert not t["all_pass"]
    # A 30 fps run is judged against its own input rate, and flagged as not the target's condition.
    half = run_summary(_recs(200, 9.0, period_ms=1000 / 30), {}, 30.0, trim=10)
    t = check_targets(
        aggregate([half], [_recs(200, 9.0, period_ms=1000 / 30)], trim=10), None, 30.0
    )
    assert not t["applies"] and t["sustains_fps"]["pass"]
    assert t["sustains_fps"]["limit"] == pytest.approx(0.98 * 30)
    lagging = run_summary(_recs(200, 9.0, period_ms=1000 / 20), {}, 30.0, trim=10)
    t = check_targets(
        aggregate([lagging], [_recs(200, 9.0, period_ms=1000 / 20)], trim=10), None, 30.0
    )
    assert not t["sustains_fps"]["pass"]
    assert "overhead_p99_ms" not in t
    assert CPU_TARGETS["e2e_p99_ms"] == 15.0


def test_aggregate_pools_instances_and_sums_throughput():
    a, b = _recs(60, 4.0), _recs(60, 8.0)
    sa, sb = run_summary(a, {}, 60.0, 10), run_summary(b, {}, 60.0, 10)
    agg = aggregate([sa, sb], [a, b], trim=10)
    assert agg["instances"] == 2
    assert agg["end_to_end_ms"]["count"] == 80
    assert agg["end_to_end_ms"]["median"] == pytest.approx(6.0)
    assert agg["results_per_s_total"] == pytest.approx(120.0, rel=1e-2)


def test_holoscan_x86_check_is_strict():
    ref = HOLOSCAN_REFERENCE["x86_a6000_headless_afap"]
    ok = holoscan_x86_check({"mean": 2.0, "max": 3.0})
    assert ok["mean_ms"]["pass"] and ok["max_ms"]["pass"]
    tie = holoscan_x86_check({"mean": ref["mean_ms"], "max": 9.0})
    assert not tie["mean_ms"]["pass"] and not tie["max_ms"]["pass"]


def test_frames_csv_has_a_row_per_frame_in_ms(tmp_path):
    recs = _recs(3, 5.0)
    path = write_frames_csv(tmp_path / "f.csv", [("pipeline", recs), ("naive", recs[:1])])
    rows = list(csv.reader(path.open()))
    assert rows[0] == ["run", "seq", "t_capture_ns", "crop_ms", "overlay_ms"]
    assert len(rows) == 1 + 3 + 1
    assert rows[2][0] == "pipeline" and float(rows[2][4]) == pytest.approx(5.0)


def test_format_summary_names_every_part():
    recs = _recs(60, 5.0)
    summary = run_summary(recs, {}, 60.0, 10)
    report = {
        "engine_loop": {"latency_ms": latency_stats([1.0, 2.0], trim=0)},
        "naive": summary,
        "pipeline": {"mode": "single-process", "instances": [summary],
                     "aggregate": aggregate([summary], [recs], 10)},
        "ratios": {"pipeline_vs_naive": ratios(summary["end_to_end_ms"],
                                               summary["end_to_end_ms"])},
        "targets": check_targets(aggregate([summary], [recs], 10), None, 60.0),
    }  # fmt: skip
    text = format_summary(report)
    for word in (
        "engine floor",
        "naive OpenCV loop",
        "pipeline (single-process)",
        "crop",
        "pipeline_vs_naive: median x1.0",
        "targets: sustains_fps PASS",
    ):
        assert word in text
