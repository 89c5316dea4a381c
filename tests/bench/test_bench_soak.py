import pytest

from pivh_live.bench.soak import soak_summary

MS = 1_000_000


def test_memory_growth_after_warmup_fds_and_p99_per_minute():
    t = [0.0, 30.0, 60.0, 120.0, 180.0]
    resource_series = {
        "t_s": t,
        "rss_mb": [50.0, 100.0, 200.0, 205.0, 210.0],  # fills up during warm-up, then +5%
        "fds": [10.0, 12.0, 12.0, 12.0, 13.0],
        "per_process": {"7": {"role": "capture", "rss_mb": [None, 40.0, 40.0, 40.0, 44.0],
                              "fds": [None, 6, 6, 7, 7]}},
    }  # fmt: skip
    recs = [(i, {"capture": i * 10**9, "overlay": i * 10**9 + (20 if i >= 60 else 5) * MS})
            for i in range(180)]  # fmt: skip
    out = soak_summary([("pipeline", recs)], resource_series, warmup_s=60.0)
    mem = out["memory_total_mb"]
    assert mem["baseline"] == 200.0 and mem["last"] == 210.0
    assert mem["growth_percent"] == pytest.approx(5.0)
    assert out["fds_total"] == {"first": 10.0, "last": 13.0, "max": 13.0}
    cap = out["per_process"]["7"]
    assert cap["role"] == "capture" and cap["rss_mb"]["growth_percent"] == pytest.approx(10.0)
    assert cap["fds"] == {"first": 6, "last": 7, "max": 7}
    windows = out["p99_per_window_ms"]["pipeline"]
    assert [w["p99"] for w in windows] == pytest.approx([5.0, 20.0, 20.0])
    assert out["p99_window_spread_ms"] == pytest.approx(15.0)
    # Default warm-up: 10% of the run, at most a minute.
    assert soak_summary([], resource_series)["warmup_s"] == pytest.approx(18.0)
