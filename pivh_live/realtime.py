"""Process and thread settings for the per-frame loops (capture, inference, host).

Two sources of millisecond stalls that have nothing to do with the work of a
frame, and how the loops avoid them:

- Python's cyclic garbage collector: a full collection walks every tracked
  object of the process (~30,000 after numpy, OpenCV, pyzmq and ONNX Runtime
  are imported: 3-6 ms here). `settle_heap` collects once and moves every
  object alive at the start of a loop into the permanent generation
  (`gc.freeze`), so later collections only walk what the loop itself made.
- Background work (image-region detection, 7-20 ms per 1080p frame) taking a
  core from a frame-path thread that wakes up: `lower_thread_priority` puts
  such a worker in the SCHED_IDLE class, so the scheduler lets waking
  frame-path threads run first. Linux only; elsewhere it does nothing.
"""

from __future__ import annotations

import gc
import logging
import os
import threading

log = logging.getLogger(__name__)

BACKGROUND_NICE = 10


def settle_heap() -> None:
    """Collect now and exempt everything alive from later collections (call before a loop)."""
    gc.collect()
    gc.freeze()


def lower_thread_priority(nice: int = BACKGROUND_NICE) -> bool:
    """Make the calling thread background work; True if that was applied.

    On Linux the thread moves to the SCHED_IDLE policy, which the scheduler
    preempts as soon as any normal thread wants its core (a higher nice value
    alone still lets it finish its time slice first, ~1.5-3 ms, on the frame
    path); where that is refused, its nice value is raised by ``nice``.
    Neither needs a privilege. Elsewhere nothing changes.
    """
    if not hasattr(os, "setpriority") or not os.path.isdir("/proc/self/task"):
        return False
    tid = threading.get_native_id()
    if hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
            return True
        except OSError as exc:
            log.debug("SCHED_IDLE refused for thread %d: %s; raising its nice value", tid, exc)
    try:
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, current + nice))
    except OSError as exc:  # seccomp or an exotic kernel: run at normal priority
        log.debug("could not lower thread %d's priority: %s", tid, exc)
        return False
    return True
