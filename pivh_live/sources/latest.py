"""Newest-frame-wins reader thread shared by capture devices and streams.

A live source must never hand out stale frames: if the consumer is slower
than the producer, old frames are dropped (and counted) instead of queueing,
so latency stays one frame at most. The thread owns the device or stream: it
reads from it and runs ``on_exit`` (release/close) itself, so the device is
never touched from two threads at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from pivh_live.errors import PivhError, SourceError
from pivh_live.sources.base import Clock, SourceTimeout

log = logging.getLogger(__name__)

# grab() returns (payload, media_time_s), None at the end, or raises.
Grab = Callable[[], "tuple[Any, float] | None"]


class LatestFrameReader:
    """Runs ``grab`` in a daemon thread and keeps only the newest result."""

    def __init__(
        self,
        grab: Grab,
        *,
        clock: Clock,
        name: str,
        on_exit: Callable[[], None] | None = None,
    ) -> None:
        self._grab = grab
        self._clock = clock
        self._name = name
        self._on_exit = on_exit
        self._cond = threading.Condition()
        self._slot: tuple[Any, float, int] | None = None
        self._error: BaseException | None = None
        self._ended = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"capture {name}", daemon=True)
        self.captured = 0
        self.dropped = 0

    def start(self) -> None:
        self._thread.start()

    def get(self, timeout_s: float) -> tuple[Any, float, int] | None:
        """(payload, media_time_s, t_capture_ns) of the newest unread grab.

        None once the producer has ended and everything was read. Raises the
        producer's error, or `SourceTimeout` after ``timeout_s`` without news.
        """
        with self._cond:
            self._cond.wait_for(
                lambda: self._slot is not None or self._error is not None or self._ended,
                timeout=timeout_s,
            )
            if self._slot is not None:
                item, self._slot = self._slot, None
                return item
            if self._error is not None:
                err = self._error
                if isinstance(err, PivhError):
                    raise err
                raise SourceError(f"{self._name} failed: {err}") from err
            if self._ended:
                return None
        raise SourceTimeout(
            f"no frame from {self._name} for {timeout_s:g} s; check the cable or the sender"
        )

    def stop(self, join_timeout_s: float) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(join_timeout_s)
            if self._thread.is_alive():
                # The thread still releases the device when its read returns.
                log.warning("%s did not stop within %.1f s", self._name, join_timeout_s)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    item = self._grab()
                except BaseException as exc:  # handed to the consumer, not lost
                    with self._cond:
                        self._error = exc
                        self._cond.notify_all()
                    return
                t_ns = self._clock()
                with self._cond:
                    if item is None:
                        self._ended = True
                        self._cond.notify_all()
                        return
                    if self._slot is not None:
                        self.dropped += 1
                    self._slot = (item[0], item[1], t_ns)
                    self.captured += 1
                    self._cond.notify_all()
        finally:
            if self._on_exit is not None:
                try:
                    self._on_exit()
                except Exception:
                    log.exception("closing %s failed", self._name)
