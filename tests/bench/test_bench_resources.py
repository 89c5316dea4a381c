import os

import pytest

from pivh_live.bench.resources import (
    CLK_TCK,
    ProcSample,
    ResourceSampler,
    parse_cpu_line,
    parse_stat,
    parse_status,
    process_tree,
    read_process,
    series,
    summarize_samples,
)

STATUS = "Name:\tpython\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\nThreads:\t7\n"


def _stat(pid, comm, ppid, utime, stime):
    rest = ["S", str(ppid)] + ["0"] * 9 + [str(utime), str(stime)] + ["0"] * 30
    return f"{pid} ({comm}) " + " ".join(rest) + "\n"


def _fake_proc(root, procs):
    """procs: {pid: (comm, ppid, utime, stime, n_fds)}."""
    for pid, (comm, ppid, ut, st, fds) in procs.items():
        d = root / str(pid)
        (d / "fd").mkdir(parents=True)
        (d / "stat").write_text(_stat(pid, comm, ppid, ut, st))
        (d / "status").write_text(STATUS)
        for i in range(fds):
            (d / "fd" / str(i)).write_text("")
    (root / "stat").write_text("cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3 4\n")
    (root / "loadavg").write_text("1.50 1.20 0.90 2/300 1234\n")


def test_parse_stat_handles_spaces_and_parentheses_in_the_name():
    comm, ppid, cpu = parse_stat(_stat(42, "py (x) y", 7, 3 * CLK_TCK, CLK_TCK))
    assert comm == "py (x) y" and ppid == 7 and cpu == pytest.approx(4.0)


def test_parse_status_and_cpu_line():
    assert parse_status(STATUS) == {"rss": 102400 * 1024, "peak_rss": 204800 * 1024,
                                    "threads": 7}  # fmt: skip
    busy, total = parse_cpu_line("cpu  100 0 100 700 100 0 0 0 0 0\n")
    assert busy == pytest.approx(200 / CLK_TCK) and total == pytest.approx(1000 / CLK_TCK)
    with pytest.raises(ValueError):
        parse_cpu_line("intr 1 2 3")


def test_read_process_and_tree_from_a_fake_proc(tmp_path):
    _fake_proc(tmp_path, {10: ("bench", 1, 0, 0, 3), 11: ("capture", 10, 0, 0, 5),
                          12: ("inference", 10, 0, 0, 2), 13: ("grandchild", 11, 0, 0, 1),
                          20: ("other", 1, 0, 0, 1)})  # fmt: skip
    assert sorted(process_tree(10, tmp_path)) == [10, 11, 12, 13]  # by scanning parent pids
    # The kernel's child lists, where present, give the same tree without the scan.
    for pid, kids in {10: "11 12", 11: "13 ", 12: "", 13: "", 20: ""}.items():
        (tmp_path / str(pid) / "task" / str(pid)).mkdir(parents=True)
        (tmp_path / str(pid) / "task" / str(pid) / "children").write_text(kids)
    (tmp_path / "12" / "stat").unlink()  # the scan would now miss 12; child lists do not
    assert sorted(process_tree(10, tmp_path)) == [10, 11, 12, 13]
    s = read_process(11, tmp_path)
    assert s is not None and s.name == "capture" and s.fds == 5
    assert s.rss == 100 * 2**20 and s.peak_rss == 200 * 2**20 and s.threads == 7
    assert read_process(99, tmp_path) is None


def test_real_proc_self_is_readable():
    if not os.path.isdir("/proc/self"):
        pytest.skip("no /proc on this system")
    s = read_process(os.getpid())
    assert s is not None and s.rss > 0 and s.fds > 0 and s.cpu_s > 0


def _sample(pid, cpu_s, rss_mb, fds, name="p"):
    return ProcSample(pid, 1, name, cpu_s, rss_mb * 2**20, rss_mb * 2**20, fds, 1)


def test_summary_cpu_percent_of_one_core_per_process_and_total():
    s = [
        (0, {1: _sample(1, 10.0, 100, 5), 2: _sample(2, 0.0, 50, 3)}, (0.0, 0.0)),
        (1_000_000_000, {1: _sample(1, 10.5, 110, 5), 2: _sample(2, 0.25, 50, 3)}, (1.5, 2.0)),
        (2_000_000_000, {1: _sample(1, 11.0, 120, 6), 2: _sample(2, 0.5, 60, 4)}, (3.0, 4.0)),
    ]
    out = summarize_samples(s, None, None, {1: "capture"})
    by_pid = {p["pid"]: p for p in out["processes"]}
    assert by_pid[1]["role"] == "capture" and by_pid[2]["role"] == "p"
    assert by_pid[1]["cpu_percent"] == pytest.approx(50.0)
    assert by_pid[2]["cpu_percent"] == pytest.approx(25.0)
    assert out["total"]["cpu_percent"] == pytest.approx(75.0)
    assert by_pid[1]["rss_mb"] == 120.0 and by_pid[1]["rss_max_mb"] == 120.0
    assert out["machine_busy_percent"] == pytest.approx(75.0)
    # A window inside the run uses only its samples.
    late = summarize_samples(s, 1_000_000_000, 2_000_000_000, {})
    assert late["seconds"] == pytest.approx(1.0)
    assert summarize_samples(s[:1], None, None, {})["available"] is False


def test_series_totals_and_per_process_fds():
    s = [
        (0, {1: _sample(1, 0.0, 100, 5)}, None),
        (2_000_000_000, {1: _sample(1, 1.0, 104, 7), 2: _sample(2, 0.0, 10, 1)}, None),
    ]
    out = series(s, {2: "inference"})
    assert out["t_s"] == [0.0, 2.0]
    assert out["rss_mb"] == [100.0, 114.0]
    assert out["fds"] == [5.0, 8.0]
    assert out["cpu_percent"] == [0.0, 50.0]
    assert out["per_process"]["2"] == {"role": "inference", "rss_mb": [None, 10.0],
                                       "fds": [None, 1]}  # fmt: skip


def test_sampler_samples_this_process(tmp_path):
    if not os.path.isdir("/proc/self"):
        pytest.skip("no /proc on this system")
    sampler = ResourceSampler(interval_s=60.0)
    with sampler:
        pass
    assert len(sampler.samples) == 2  # one on entry, one on exit
    assert os.getpid() in sampler.samples[0][1]


def test_series_keeps_only_the_run_window():
    s = [(t * 1_000_000_000, {1: _sample(1, 0.0, 100 + t, 5)}, None) for t in range(5)]
    out = series(s, None, 1_000_000_000, 3_000_000_000)
    assert out["t_s"] == [0.0, 1.0, 2.0] and out["rss_mb"] == [101.0, 102.0, 103.0]
