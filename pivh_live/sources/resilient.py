"""NO SIGNAL and reconnect: a wrapper that keeps a live source alive.

`ResilientSource.read()` returns a `Frame`, a `SourceStatus` when the state
changes, or None when a finite source ends. It never raises for a failing
source: an open or read error, or no frame for ``stall_s``, becomes a
``no_signal`` status; the next reads wait the backoff delay (0.5, 1, 2, 5,
5, ... s), return ``reconnecting`` and try to open a fresh source from the
factory; the first frame afterwards comes right after a ``signal`` status.
Every call returns after at most one blocking step (a backoff sleep, an
open attempt, or ``poll_s`` of waiting for a frame), so a display loop can
keep drawing NO SIGNAL. Clock and sleep are injected so tests are exact.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType

from pivh_live.errors import PivhError
from pivh_live.frames import Frame
from pivh_live.sources.base import Clock, Sleep, Source, SourceInfo, SourceTimeout

log = logging.getLogger(__name__)

STATES = ("signal", "no_signal", "reconnecting")
DEFAULT_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)


@dataclass(frozen=True)
class SourceStatus:
    """A change of source state; ``message`` is one line for the operator."""

    t_ns: int
    state: str
    message: str

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"state must be one of {STATES}, not {self.state!r}")


class ResilientSource:
    """Wraps ``factory() -> Source``; see the module docstring for the protocol."""

    def __init__(
        self,
        factory: Callable[[], Source],
        *,
        backoff_s: Sequence[float] = DEFAULT_BACKOFF_S,
        stall_s: float = 2.0,
        poll_s: float = 0.25,
        clock: Clock = time.monotonic_ns,
        sleep: Sleep = time.sleep,
    ) -> None:
        if not backoff_s:
            raise ValueError("backoff_s needs at least one delay")
        self._factory = factory
        self._backoff_s = tuple(backoff_s)
        self._stall_ns = round(stall_s * 1e9)
        self._stall_s = stall_s
        self._poll_s = min(poll_s, stall_s)
        self._clock = clock
        self._sleep = sleep
        self._inner: Source | None = None
        self._lost: Source | None = None
        self._info: SourceInfo | None = None
        # "reconnecting" before the first attempt: no status is due until it succeeds or fails.
        self._state = "reconnecting"
        self._failures = 0
        self._attempts = 0
        self._last_frame_ns = 0
        self._seq = 0
        self._pending: deque[Frame] = deque()
        self._ended = False

    @property
    def state(self) -> str:
        return self._state

    @property
    def info(self) -> SourceInfo | None:
        """The current (or last) inner source's info; None before the first open."""
        if self._inner is not None:
            self._info = self._inner.info
        return self._info

    def open(self) -> None:
        """Nothing to do: the first ``read()`` connects, so a missing device is NO SIGNAL."""

    def read(self) -> Frame | SourceStatus | None:
        if self._pending:
            return self._pending.popleft()
        if self._ended:
            return None
        while True:
            if self._inner is None:
                status = self._connect_step()
                if status is not None:
                    return status
            assert self._inner is not None
            try:
                frame = self._inner.read(timeout_s=self._poll_s)
            except SourceTimeout:
                if self._clock() - self._last_frame_ns >= self._stall_ns:
                    return self._lose(f"no frame for {self._stall_s:g} s")
                continue
            except (PivhError, OSError) as exc:
                return self._lose(str(exc))
            if frame is None:
                if not self._inner.live:
                    self._ended = True
                    self._drop_inner()
                    return None
                return self._lose("the source ended")
            return self._deliver(frame)

    def close(self) -> None:
        self._pending.clear()
        self._drop_inner()

    def __enter__(self) -> ResilientSource:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __iter__(self) -> Iterator[Frame | SourceStatus]:
        while (item := self.read()) is not None:
            yield item

    def _connect_step(self) -> SourceStatus | None:
        """Sleep the backoff after a loss, or try one open; None once open."""
        if self._state == "no_signal":
            self._drop_inner()
            delay = self._backoff_s[min(self._failures - 1, len(self._backoff_s) - 1)]
            self._sleep(delay)
            return self._status("reconnecting", f"reconnecting (attempt {self._attempts + 1})")
        self._attempts += 1
        inner: Source | None = None
        try:
            inner = self._factory()
            inner.open()
        except (PivhError, OSError) as exc:
            if inner is not None:
                _close_quietly(inner)
            self._failures += 1
            return self._status("no_signal", str(exc))
        self._inner = inner
        self._info = inner.info
        self._last_frame_ns = self._clock()
        return None

    def _deliver(self, frame: Frame) -> Frame | SourceStatus:
        self._last_frame_ns = self._clock()
        self._failures = 0
        # Inner sources restart at 0 after a reconnect; the wrapper's count runs on.
        frame = dataclasses.replace(frame, seq=self._seq)
        self._seq += 1
        if self._state == "signal":
            return frame
        self._pending.append(frame)
        info = self.info
        size = f"{info.width}x{info.height}" if info is not None else "?"
        return self._status("signal", f"receiving {size}")

    def _lose(self, message: str) -> SourceStatus:
        # The lost source is closed on the next read, not now: closing can
        # wait for a reader thread stuck in the driver, and NO SIGNAL must
        # reach the display at once.
        if self._inner is not None:
            self._info = self._inner.info
            self._lost, self._inner = self._inner, None
        self._failures += 1
        return self._status("no_signal", message)

    def _drop_inner(self) -> None:
        if self._lost is not None:
            _close_quietly(self._lost)
            self._lost = None
        if self._inner is not None:
            self._info = self._inner.info
            _close_quietly(self._inner)
            self._inner = None

    def _status(self, state: str, message: str) -> SourceStatus:
        self._state = state
        level = logging.INFO if state == "signal" else logging.WARNING
        log.log(level, "source %s: %s", state, message)
        return SourceStatus(self._clock(), state, message)


def _close_quietly(source: Source) -> None:
    try:
        source.close()
    except Exception:
        log.exception("closing a failed source raised")
