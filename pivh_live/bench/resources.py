"""CPU, memory and file-descriptor use of a process tree, sampled from /proc (Linux).

No psutil: ``/proc/<pid>/stat`` gives CPU ticks (utime + stime) and the
parent pid, ``/proc/<pid>/status`` the resident set (VmRSS) and its peak
(VmHWM), ``/proc/<pid>/fd`` the open descriptors, ``/proc/stat`` the
machine's busy time (the load the benchmark shared the CPU with). CPU is
reported in % of one core (200% = two cores busy). On a system without
/proc the sampler records nothing and says so.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

PROC = Path("/proc")
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class ProcSample:
    """One process at one time: CPU seconds so far, RSS and peak RSS (bytes), open fds."""

    pid: int
    ppid: int
    name: str
    cpu_s: float
    rss: int
    peak_rss: int
    fds: int
    threads: int


def parse_stat(text: str) -> tuple[str, int, float]:
    """``/proc/<pid>/stat`` -> (comm, ppid, utime + stime in seconds).

    The command name is in parentheses and may itself contain spaces and
    parentheses, so the fields are counted from the last ``)``.
    """
    open_, close = text.index("("), text.rindex(")")
    comm = text[open_ + 1 : close]
    fields = text[close + 2 :].split()
    # fields[0] is state (field 3); ppid is field 4, utime 14, stime 15.
    ppid, utime, stime = int(fields[1]), int(fields[11]), int(fields[12])
    return comm, ppid, (utime + stime) / CLK_TCK


def parse_status(text: str) -> dict[str, int]:
    """``/proc/<pid>/status`` -> {"rss": bytes, "peak_rss": bytes, "threads": n}."""
    keys = {"VmRSS": "rss", "VmHWM": "peak_rss", "Threads": "threads"}
    out = {"rss": 0, "peak_rss": 0, "threads": 0}
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name in keys:
            parts = value.split()
            n = int(parts[0])
            out[keys[name]] = n * 1024 if len(parts) > 1 and parts[1] == "kB" else n
    return out


def parse_cpu_line(text: str) -> tuple[float, float]:
    """The ``cpu`` line of ``/proc/stat`` -> (busy seconds, total seconds), all cores."""
    for line in text.splitlines():
        if line.startswith("cpu "):
            v = [int(x) for x in line.split()[1:]]
            idle = v[3] + (v[4] if len(v) > 4 else 0)  # idle + iowait
            total = sum(v[:8])  # guest time is already counted in user
            return (total - idle) / CLK_TCK, total / CLK_TCK
    raise ValueError("no cpu line in /proc/stat")


def read_process(pid: int, root: Path = PROC) -> ProcSample | None:
    """One `ProcSample`, or None if the process has gone (or /proc is unreadable)."""
    base = root / str(pid)
    try:
        comm, ppid, cpu_s = parse_stat((base / "stat").read_text())
        status = parse_status((base / "status").read_text())
        try:
            fds = len(os.listdir(base / "fd"))
        except OSError:
            fds = -1  # another user's process
    except (OSError, ValueError, IndexError):
        return None
    return ProcSample(pid, ppid, comm, cpu_s, status["rss"], status["peak_rss"], fds,
                      status["threads"])  # fmt: skip


def _children(pid: int, root: Path) -> list[int] | None:
    """Child pids from ``/proc/<pid>/task/*/children`` (None where the kernel lacks it)."""
    try:
        tasks = os.listdir(root / str(pid) / "task")
    except OSError:
        # No task directory on a live process: not a Linux-like /proc; scan instead.
        return None if (root / str(pid)).is_dir() else []
    out: list[int] = []
    for tid in tasks:
        try:
            out += [
                int(c) for c in (root / str(pid) / "task" / tid / "children").read_text().split()
            ]
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            continue
    return out


def process_tree(root_pid: int, root: Path = PROC) -> list[int]:
    """``root_pid`` and all its descendants.

    Reads the kernel's child lists (a few small files) where it has them, so
    sampling does not hold the GIL of a single-process pipeline for long;
    else scans every process's parent pid.
    """
    tree, frontier = [root_pid], [root_pid]
    while frontier:
        found: list[int] = []
        for pid in frontier:
            kids = _children(pid, root)
            if kids is None:
                return _scan_tree(root_pid, root)
            found += [k for k in kids if k not in tree and k not in found]
        tree += found
        frontier = found
    return tree


def _scan_tree(root_pid: int, root: Path) -> list[int]:
    parents: dict[int, int] = {}
    try:
        entries = os.listdir(root)
    except OSError:
        return [root_pid]
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            _, ppid, _ = parse_stat((root / entry / "stat").read_text())
        except (OSError, ValueError, IndexError):
            continue
        parents[int(entry)] = ppid
    tree, frontier = [root_pid], [root_pid]
    while frontier:
        children = [p for p, pp in parents.items() if pp in frontier and p not in tree]
        tree += children
        frontier = children
    return tree


def machine_cpu(root: Path = PROC) -> tuple[float, float] | None:
    try:
        return parse_cpu_line((root / "stat").read_text())
    except (OSError, ValueError):
        return None


def loadavg(root: Path = PROC) -> list[float] | None:
    try:
        return [float(x) for x in (root / "loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        return None


class ResourceSampler:
    """Samples a process tree every ``interval_s`` in a daemon thread.

    ``pids`` returns the pids to sample (default: this process and its
    descendants). Use as a context manager; `summary` then reduces the
    samples inside a time window to per-process and total figures.
    """

    def __init__(
        self,
        interval_s: float = 0.5,
        *,
        pids: Callable[[], Iterable[int]] | None = None,
        root: Path = PROC,
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.interval_s = interval_s
        self._pids = pids or (lambda: process_tree(os.getpid(), root))
        self._root = root
        self._clock = clock
        self.samples: list[tuple[int, dict[int, ProcSample], tuple[float, float] | None]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> None:
        """Take one sample now (the thread calls this; tests call it directly)."""
        procs = {}
        for pid in self._pids():
            s = read_process(pid, self._root)
            if s is not None:
                procs[pid] = s
        self.samples.append((self._clock(), procs, machine_cpu(self._root)))

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def __enter__(self) -> ResourceSampler:
        self.sample()
        self._thread = threading.Thread(target=self._run, name="bench-resources", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        self.sample()

    def summary(
        self,
        t_start_ns: int | None = None,
        t_end_ns: int | None = None,
        labels: Mapping[int, str] | None = None,
    ) -> dict[str, Any]:
        """CPU %, RSS and fds per process and in total over [t_start, t_end] (default: all)."""
        return summarize_samples(self.samples, t_start_ns, t_end_ns, labels or {})


def _window(
    samples: Sequence[tuple[int, dict[int, ProcSample], Any]],
    t_start_ns: int | None,
    t_end_ns: int | None,
) -> list[tuple[int, dict[int, ProcSample], Any]]:
    lo = -np.inf if t_start_ns is None else t_start_ns
    hi = np.inf if t_end_ns is None else t_end_ns
    inside = [s for s in samples if lo <= s[0] <= hi]
    if len(inside) < 2:
        # A run shorter than the sampling interval: the samples around it.
        before = [s for s in samples if s[0] < lo][-1:]
        after = [s for s in samples if s[0] > hi][:1]
        inside = before + inside + after
    return inside


def summarize_samples(
    samples: Sequence[tuple[int, dict[int, ProcSample], tuple[float, float] | None]],
    t_start_ns: int | None,
    t_end_ns: int | None,
    labels: Mapping[int, str],
) -> dict[str, Any]:
    win = _window(samples, t_start_ns, t_end_ns)
    if len(win) < 2:
        return {"available": False, "reason": "fewer than two /proc samples"}
    (t0, _, cpu0), (t1, _, cpu1) = win[0], win[-1]
    seconds = (t1 - t0) / 1e9
    processes = []
    for pid in sorted(set().union(*(procs.keys() for _, procs, _ in win))):
        seen = [procs[pid] for _, procs, _ in win if pid in procs]
        a, b = seen[0], seen[-1]
        span = max(seconds, 1e-9)
        processes.append({
            "pid": pid,
            "role": labels.get(pid, b.name),
            "cpu_percent": round(100.0 * (b.cpu_s - a.cpu_s) / span, 1),
            "rss_mb": round(b.rss / 2**20, 1),
            "rss_max_mb": round(max(s.rss for s in seen) / 2**20, 1),
            "peak_rss_mb": round(max(s.peak_rss for s in seen) / 2**20, 1),
            "fds": b.fds,
            "threads": b.threads,
        })  # fmt: skip
    out: dict[str, Any] = {
        "available": True,
        "seconds": round(seconds, 2),
        "samples": len(win),
        "processes": processes,
        "total": {
            "cpu_percent": round(sum(p["cpu_percent"] for p in processes), 1),
            "rss_mb": round(sum(p["rss_mb"] for p in processes), 1),
            "peak_rss_mb": round(sum(p["peak_rss_mb"] for p in processes), 1),
        },
    }
    if cpu0 is not None and cpu1 is not None and cpu1[1] > cpu0[1]:
        cores = os.cpu_count() or 1
        busy = 100.0 * (cpu1[0] - cpu0[0]) / (cpu1[1] - cpu0[1])
        out["machine_busy_percent"] = round(busy, 1)  # of all cores
        out["machine_busy_cores"] = round(busy * cores / 100.0, 2)
        out["others_busy_cores"] = round(
            max(0.0, busy * cores / 100.0 - out["total"]["cpu_percent"] / 100.0), 2
        )
    return out


def series(
    samples: Sequence[tuple[int, dict[int, ProcSample], Any]],
    labels: Mapping[int, str] | None = None,
    t_start_ns: int | None = None,
    t_end_ns: int | None = None,
) -> dict[str, Any]:
    """Over time: t (s from the first sample), total rss_mb, fds and cpu_percent (per
    interval), and ``per_process`` {pid: {"role", "rss_mb", "fds"}} (None while absent).
    Only samples inside [t_start, t_end] when given (the run, not its start-up and teardown)."""
    labels = labels or {}
    samples = [
        s for s in samples
        if (t_start_ns is None or s[0] >= t_start_ns) and (t_end_ns is None or s[0] <= t_end_ns)
    ]  # fmt: skip
    if not samples:
        return {"t_s": [], "rss_mb": [], "fds": [], "cpu_percent": [], "per_process": {}}
    t0 = samples[0][0]
    t, rss, fds, cpu = [], [], [], []
    prev: tuple[int, dict[int, ProcSample]] | None = None
    for ts, procs, _ in samples:
        t.append(round((ts - t0) / 1e9, 3))
        rss.append(round(sum(p.rss for p in procs.values()) / 2**20, 2))
        fds.append(float(sum(max(p.fds, 0) for p in procs.values())))
        if prev is None or ts <= prev[0]:
            cpu.append(0.0)
        else:
            used = sum(p.cpu_s - prev[1][pid].cpu_s for pid, p in procs.items() if pid in prev[1])
            cpu.append(round(100.0 * used / ((ts - prev[0]) / 1e9), 1))
        prev = (ts, procs)
    per: dict[str, dict[str, Any]] = {}
    for pid in sorted(set().union(*(procs.keys() for _, procs, _ in samples))):
        named = next(procs[pid].name for _, procs, _ in samples if pid in procs)
        per[str(pid)] = {
            "role": labels.get(pid, named),
            "rss_mb": [round(p[pid].rss / 2**20, 2) if pid in p else None for _, p, _ in samples],
            "fds": [p[pid].fds if pid in p else None for _, p, _ in samples],
        }
    return {"t_s": t, "rss_mb": rss, "fds": fds, "cpu_percent": cpu, "per_process": per}
