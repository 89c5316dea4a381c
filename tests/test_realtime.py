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


def _nice_of_new_thread(target: object) -> tuple[object, int, int]:
    out: dict[str, object] = {}

    def run() -> None:
        out["result"] = target()  # type: ignore[operator]
        out["nice"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    t = threading.Thread(target=run)
    t.start()
    t.join()
    return out["result"], int(out["nice"]), os.getpriority(os.PRIO_PROCESS, 0)  # type: ignore[call-overload]


@linux_only
def test_lower_thread_priority_acts_on_the_calling_thread_only() -> None:
    applied, worker_nice, main_nice = _nice_of_new_thread(lower_thread_priority)
    assert applied is True
    assert worker_nice == min(19, main_nice + 10)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == main_nice


@linux_only
def test_background_region_worker_runs_niced() -> None:
    from pivh_live.region import BackgroundRegionDetector

    seen: list[int] = []

    class Probe:
        roi = None

        def update(self, image: np.ndarray) -> None:
            seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    det = BackgroundRegionDetector(Probe(), every=1)  # type: ignore[arg-type]
    try:
        det._found = ((8, 8), object())  # type: ignore[assignment]  # a region is known
        det.update(np.zeros((8, 8), np.uint8))
        assert det.wait_idle(10.0)
    finally:
        det.close()
    main_nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert seen == [min(19, main_nice + 10)]
