"""A tiny benchmark run end to end (fixed-output engine, synthetic clip): fields and types only."""

import json

import pytest
from bench_fakes import ROI, write_cached_clip

from pivh_live.bench.pipeline_bench import BenchConfig
from pivh_live.bench.runner import run_bench

STATS_KEYS = {"min", "mean", "median", "p90", "p95", "p99", "p99.9", "max", "stddev", "tail",
              "flatness", "count"}  # fmt: skip


def _config(tmp_path, **kw):
    cache = tmp_path / "cache"
    write_cached_clip(cache, n=12)
    base = dict(fps=0.0, resolution=(240, 180), duration_s=None, frames=40, single_process=True,
                engine_factory="bench_fakes:make_fixed_engine", roi="known", clip_frames=12,
                out=tmp_path / "out", cache_dir=cache)  # fmt: skip
    return BenchConfig(**{**base, **kw})


def _assert_stats(s, count=None):
    assert set(s) == STATS_KEYS
    assert all(isinstance(v, float) for k, v in s.items() if k != "count")
    assert s["min"] <= s["median"] <= s["p99"] <= s["max"]
    if count is not None:
        assert s["count"] == count


def test_tiny_all_mode_run_writes_typed_json(tmp_path):
    config = _config(tmp_path)
    report = run_bench(config, "all", progress=False, engine_calls=30, plots=False)
    on_disk = json.loads((config.out / "bench.json").read_text())
    assert on_disk["schema"] == 1 and on_disk["mode"] == "all"
    assert on_disk["model"] == "fixed 9.9.9"
    for key in (
        "machine",
        "load",
        "config",
        "source",
        "engine_loop",
        "naive",
        "pipeline",
        "ratios",
        "targets",
        "holoscan_x86_check",
        "resources",
        "warnings",
    ):
        assert key in on_disk, key
    assert on_disk["source"]["roi"] == [ROI.x, ROI.y, ROI.w, ROI.h]
    _assert_stats(on_disk["engine_loop"]["latency_ms"], 30)
    # 40 frames, first and last 10 left out.
    _assert_stats(on_disk["naive"]["end_to_end_ms"], 20)
    inst = on_disk["pipeline"]["instances"][0]
    assert inst["frames"] == 40 and inst["kept"] == 20
    _assert_stats(inst["end_to_end_ms"], 20)
    assert inst["stamp_order"] == ["capture", "crop", "preprocess", "infer", "smooth", "overlay"]
    for name in inst["stamp_order"][1:]:
        _assert_stats(inst["stages_ms"][name], 20)
    assert inst["drops"]["live_in_window"] == 0 and inst["drops"]["source"] == 0
    assert isinstance(inst["throughput"]["results_per_s"], float)
    agg = on_disk["pipeline"]["aggregate"]
    _assert_stats(agg["end_to_end_ms"], 20)
    e2e = agg["end_to_end_ms"]
    for name, base in (
        ("pipeline_vs_engine", on_disk["engine_loop"]["latency_ms"]),
        ("pipeline_vs_naive", on_disk["naive"]["end_to_end_ms"]),
    ):
        r = on_disk["ratios"][name]
        # Ratios are rounded to 3 decimals (bench.report.ratio): up to 5e-4 off.
        assert r["median"] == pytest.approx(e2e["median"] / base["median"], rel=1e-3, abs=5e-4)
        assert r["p99"] == pytest.approx(e2e["p99"] / base["p99"], rel=1e-3, abs=5e-4)
    assert isinstance(on_disk["targets"]["all_pass"], bool)
    assert on_disk["targets"]["applies"] is False  # fps 0, not the 60 fps of the targets
    res = on_disk["resources"]["pipeline"]
    if res["available"]:
        assert res["total"]["cpu_percent"] >= 0 and res["total"]["rss_mb"] > 0
    assert report["pipeline"]["mode"] == "single-process"
    assert (config.out / "frames.csv").read_text().count("\n") == 1 + 20 + 20


def test_plots_are_written_when_matplotlib_is_present(tmp_path):
    pytest.importorskip("matplotlib")
    config = _config(tmp_path, frames=30)
    report = run_bench(config, "pipeline", progress=False, plots=True)
    assert set(report["plots"]) == {"latency_cdf.png", "latency_time.png", "stages.png"}
    for name in report["plots"]:
        assert (config.out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_too_short_a_run_says_how_to_fix_it(tmp_path):
    from pivh_live.errors import PivhError

    with pytest.raises(PivhError, match="run longer"):
        run_bench(_config(tmp_path, frames=15), "pipeline", progress=False, plots=False)


def test_cli_options_map_onto_the_config():
    from pivh_live.cli import build_parser
    from pivh_live.commands.bench import _config as cli_config

    args = build_parser().parse_args(
        ["bench", "--fps", "30", "--resolution", "1280x720", "--frames", "50", "--instances",
         "2", "--single-process", "--display", "--roi", "known",
         "--source", "phantom:?screen=1&seed=4&grade=2"])  # fmt: skip
    c = cli_config(args)
    assert (c.fps, c.resolution, c.frames, c.duration_s) == (30.0, (1280, 720), 50, None)
    assert (c.instances, c.single_process, c.display, c.roi) == (2, True, True, "known")
    assert c.source is None and (c.seed, c.grade) == (4, 2)
    default = cli_config(build_parser().parse_args(["bench"]))
    assert default.duration_s == 20.0 and default.fps == 60.0 and not default.single_process
    soak = cli_config(build_parser().parse_args(["bench", "--soak"]))
    assert soak.duration_s == 1800.0
    other = cli_config(build_parser().parse_args(["bench", "--source", "file:x.mp4?loop=1"]))
    assert other.source == "file:x.mp4?loop=1"


@pytest.mark.slow
def test_two_instances_both_report(tmp_path):
    # Which processes the resource sampler catches in a run this short depends on
    # timing, so only the instances' own reports are checked here.
    config = _config(tmp_path, instances=2, frames=30)
    report = run_bench(config, "pipeline", progress=False, plots=False)
    insts = report["pipeline"]["instances"]
    assert len(insts) == 2 and report["pipeline"]["aggregate"]["end_to_end_ms"]["count"] == 20


@pytest.mark.slow
def test_multi_process_run_has_transport_stamps_and_stage_counters(tmp_path):
    config = _config(tmp_path, single_process=False, fps=60.0, frames=40)
    report = run_bench(config, "pipeline", progress=False, plots=False)
    inst = report["pipeline"]["instances"][0]
    assert report["pipeline"]["mode"] == "multi-process"
    assert inst["stamp_order"] == [
        "capture", "crop", "capture.send", "infer.recv", "preprocess", "infer", "smooth",
        "result.send", "host.recv", "overlay",
    ]  # fmt: skip
    # Counters from the stage heartbeats and the consumer host (the resource sampler may
    # miss processes in a run this short, so process roles are not checked here).
    for key in ("inference_dropped", "consumer_dropped", "unseen", "record_dropped", "restarts"):
        assert isinstance(inst["counters"][key], int), key


def test_stamping_consumer_renders_stamps_and_forwards_to_handoffs():
    import numpy as np

    from pivh_live.bench.pipeline_bench import StampingConsumer
    from pivh_live.frames import Roi
    from pivh_live.pipeline.results import RegionFrame

    class Overlay:
        rendered = 0

        def render(self, region, result):
            Overlay.rendered += 1

    class Handoff:
        def __init__(self):
            self.seen, self.endpoints = [], None

        def on_result(self, region, result):
            self.seen.append(result.seq)

        def on_status(self, status):
            pass

        def attach(self, endpoints):
            self.endpoints = endpoints

        def close(self):
            pass

    class Result:
        seq, stamps = 5, {"capture": 1, "smooth": 2}

    ticks = iter(range(100, 200))
    handoff = Handoff()
    consumer = StampingConsumer(Overlay(), [("record", handoff)], clock=lambda: next(ticks))
    region = RegionFrame(5, 1, 0.0, np.zeros((2, 2), np.uint8), Roi(0, 0, 2, 2))
    consumer.on_result(region, Result())
    consumer.on_result(None, Result())  # no frame yet (multi-process start): counted, skipped
    consumer.attach("endpoints")
    assert Overlay.rendered == 1 and handoff.seen == [5] and handoff.endpoints == "endpoints"
    assert consumer.table.records() == [(5, {"capture": 1, "smooth": 2, "overlay": 100,
                                             "record": 101})]  # fmt: skip
    assert consumer.no_region == 1
