import numpy as np
import pytest

from pivh_live.bench.timing import (
    StampTable,
    analyze_records,
    per_window,
    present_stages,
    seq_gaps,
    source_drop_estimate,
    throughput,
    trimmed,
)

MS = 1_000_000


def _records(n, *, crop=2, infer=3, overlay=1, period_ms=10, outliers=True):
    """Frames with fixed stage durations (ms); the first and last 10 are huge outliers."""
    recs = []
    for i in range(n):
        scale = 1000 if outliers and (i < 10 or i >= n - 10) else 1
        cap = i * period_ms * MS
        c = cap + crop * scale * MS
        inf = c + infer * MS
        recs.append((i, {"capture": cap, "crop": c, "infer": inf, "overlay": inf + overlay * MS}))
    return recs


def test_trimming_leaves_out_first_and_last_ten_frames():
    out = analyze_records(_records(60), trim=10)
    assert out["frames"] == 60 and out["kept"] == 40
    e2e = out["end_to_end_ms"]
    # Only the ordinary frames remain: every one takes exactly 2 + 3 + 1 ms.
    assert e2e["count"] == 40
    assert e2e["min"] == e2e["max"] == pytest.approx(6.0)
    untrimmed = analyze_records(_records(60), trim=0)
    assert untrimmed["end_to_end_ms"]["max"] == pytest.approx(2000 + 4)


def test_stage_intervals_and_cumulative_follow_stamp_order():
    out = analyze_records(_records(40, outliers=False), trim=10)
    assert out["stamp_order"] == ["capture", "crop", "infer", "overlay"]
    assert out["stages_ms"]["crop"]["median"] == pytest.approx(2.0)
    assert out["stages_ms"]["infer"]["median"] == pytest.approx(3.0)
    assert out["stages_ms"]["overlay"]["median"] == pytest.approx(1.0)
    assert out["cumulative_ms"]["infer"]["median"] == pytest.approx(5.0)
    assert out["cumulative_ms"]["overlay"]["median"] == pytest.approx(6.0)


def test_branches_cover_only_frames_that_have_them():
    recs = _records(40, outliers=False)
    for i in range(0, 40, 2):  # the display encoded every other frame, 9 ms after capture
        recs[i][1]["display"] = recs[i][1]["capture"] + 9 * MS
    out = analyze_records(recs, trim=10)
    assert out["branches_ms"]["display"]["frames"] == 10
    assert out["branches_ms"]["display"]["median"] == pytest.approx(9.0)
    assert "display" not in out["stamp_order"]


def test_missing_end_stamp_and_too_few_frames_are_errors():
    recs = [(i, {"capture": i, "crop": i + 1}) for i in range(30)]
    with pytest.raises(ValueError, match="overlay"):
        analyze_records(recs, trim=10)
    with pytest.raises(ValueError, match="more than 20"):
        trimmed(recs[:20], 10)
    assert present_stages([]) == []


def test_seq_gaps_and_source_drop_estimate():
    assert seq_gaps([3, 4, 5, 8, 9]) == 2
    assert seq_gaps([1]) == 0
    # 60 fps for 1 s of capture time -> 61 frames due; seqs show only 51 delivered.
    recs = [(i, {"capture": round(i * 1e9 / 50)}) for i in range(51)]
    assert source_drop_estimate(recs, 60.0) == 10
    assert source_drop_estimate(recs, 50.0) == 0
    assert source_drop_estimate(recs, 0.0) is None


def test_throughput_counts_results_per_second():
    recs = _records(101, outliers=False, period_ms=10)  # 100 intervals over 1 s
    t = throughput(recs)
    assert t["results_per_s"] == pytest.approx(100.0)
    assert t["capture_fps"] == pytest.approx(100.0)


def test_per_window_p99_per_minute():
    recs = []
    for i in range(240):  # 4 minutes at 1 fps; latency 5 ms, 50 ms in minute 2
        lat = 50 if 120 <= i < 180 else 5
        cap = i * 1_000_000_000
        recs.append((i, {"capture": cap, "overlay": cap + lat * MS}))
    windows = per_window(recs, 60.0)
    assert [w["frames"] for w in windows] == [60, 60, 60, 60]
    assert [w["p99"] for w in windows] == pytest.approx([5, 5, 50, 5])
    assert windows[2]["start_s"] == 120.0


def test_stamp_table_round_trips_and_grows():
    table = StampTable(capacity=2)
    rows = [(7, {"capture": 10, "crop": 12, "overlay": 20}), (8, {"capture": 11, "odd.hop": 15}),
            (9, {"capture": 0, "display": 5})]  # fmt: skip
    for seq, stamps in rows:
        table.add(seq, stamps)
    assert len(table) == 3
    assert table.records() == rows
    # Preallocated up front: the memory does not grow while a run fills it.
    assert StampTable(capacity=1000)._data.shape[0] == 1000
    assert np.all(StampTable(capacity=4)._data == StampTable.MISSING)


def test_seq_times_keep_the_first_time_and_grow_past_capacity() -> None:
    from pivh_live.bench.timing import SeqTimes

    times = SeqTimes(capacity=4)
    times.add(1, 100)
    times.add(1, 200)  # a later fetch of the same image keeps the first time
    times.add(-1, 5)
    times.add(9, 900)  # past capacity: grows
    assert 1 in times and 9 in times and 0 not in times and -1 not in times and 50 not in times
    assert times[1] == 100 and times[9] == 900 and len(times) == 2
    with pytest.raises(KeyError):
        times[0]
