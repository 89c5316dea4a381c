"""Loop settings: the heap is frozen, background threads run at a lower priority."""

from __future__ import annotations

import gc
import os
import sys
import threading

import numpy as np
import pytest

from pivh_live.realtime import lower_thread_priority, settle_heap

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="per-thread nice values are a Linux feature"
)


def test_settle_heap_freezes_what_is_alive() -> None:
    keep = [{"n": i} for i in range(100)]
    try:
        settle_heap()
        assert gc.get_freeze_count() >= len(keep)
    finally:
        gc.unfreeze()


def _in_new_thread(target: object) -> tuple[object, int, int]:
    """(result, scheduling policy, nice value) of ``target()`` run in a fresh thread."""
    out: dict[str, object] = {}

    def run() -> None:
        out["result"] = target()  # type: ignore[operator]
        tid = threading.get_native_id()
        out["policy"] = os.sched_getscheduler(tid)
        out["nice"] = os.getpriority(os.PRIO_PROCESS, tid)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    return out["result"], int(out["policy"]), int(out["nice"])  # type: ignore[call-overload]


def _is_background(policy: int, nice: int, main_nice: int) -> bool:
    return policy == os.SCHED_IDLE or nice == min(19, main_nice + 10)


@linux_only
def test_lower_thread_priority_acts_on_the_calling_thread_only() -> None:
    main_tid = threading.get_native_id()
    main_policy = os.sched_getscheduler(main_tid)
    main_nice = os.getpriority(os.PRIO_PROCESS, main_tid)
    applied, policy, nice = _in_new_thread(lower_thread_priority)
    assert applied is True
    assert _is_background(policy, nice, main_nice)
    assert os.sched_getscheduler(main_tid) == main_policy
    assert os.getpriority(os.PRIO_PROCESS, main_tid) == main_nice


@linux_only
def test_background_region_worker_runs_at_background_priority() -> None:
    from pivh_live.region import BackgroundRegionDetector

    seen: list[tuple[int, int]] = []

    class Probe:
        roi = None

        def update(self, image: np.ndarray) -> None:
            tid = threading.get_native_id()
            seen.append((os.sched_getscheduler(tid), os.getpriority(os.PRIO_PROCESS, tid)))

    det = BackgroundRegionDetector(Probe(), every=1)  # type: ignore[arg-type]
    try:
        det._found = ((8, 8), object())  # type: ignore[assignment]  # a region is known
        det.update(np.zeros((8, 8), np.uint8))
        assert det.wait_idle(10.0)
    finally:
        det.close()
    main_nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert len(seen) == 1 and _is_background(*seen[0], main_nice)
