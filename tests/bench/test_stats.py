import numpy as np
import pytest

from pivh_live.bench.stats import latency_stats


def test_known_ramp_without_trim():
    s = latency_stats(np.arange(1, 101, dtype=np.float64), trim=0)
    assert s["count"] == 100
    assert s["min"] == 1.0 and s["max"] == 100.0
    assert s["mean"] == pytest.approx(50.5)
    assert s["median"] == pytest.approx(50.5)
    # numpy linear percentiles on 1..100: p = 1 + 0.99 * q
    assert s["p90"] == pytest.approx(90.1)
    assert s["p95"] == pytest.approx(95.05)
    assert s["p99"] == pytest.approx(99.01)
    assert s["p99.9"] == pytest.approx(99.901)
    assert s["tail"] == pytest.approx(100.0 - 95.05)
    assert s["flatness"] == pytest.approx(90.1 - 10.9)
    assert s["stddev"] == pytest.approx(np.std(np.arange(1, 101), ddof=1))


def test_trim_drops_first_and_last_samples():
    samples = np.concatenate([np.full(10, 1e6), np.full(50, 2.0), np.full(10, -1e6)])
    s = latency_stats(samples, trim=10)
    assert s["count"] == 50
    assert s["min"] == s["max"] == s["median"] == 2.0
    assert s["stddev"] == 0.0 and s["tail"] == 0.0 and s["flatness"] == 0.0


def test_single_outlier_shows_in_tail_not_flatness():
    samples = np.full(1000, 5.0)
    samples[500] = 50.0
    s = latency_stats(samples, trim=0)
    assert s["tail"] == pytest.approx(45.0)
    assert s["flatness"] == 0.0
    assert s["p99.9"] > 5.0


def test_unit_agnostic_ns_and_ms():
    ms = np.array([1.0, 2.0, 3.0, 4.0])
    a, b = latency_stats(ms, trim=0), latency_stats(ms * 1e6, trim=0)
    for key in ("min", "mean", "median", "p95", "max", "stddev"):
        assert b[key] == pytest.approx(a[key] * 1e6)


def test_rejects_too_few_or_bad_samples():
    with pytest.raises(ValueError, match="more than 20"):
        latency_stats(np.ones(20), trim=10)
    with pytest.raises(ValueError, match="finite"):
        latency_stats([1.0, float("nan")], trim=0)
    with pytest.raises(ValueError, match="trim"):
        latency_stats([1.0], trim=-1)
    assert latency_stats([3.0], trim=0)["stddev"] == 0.0
