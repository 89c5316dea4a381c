"""The `Source` interface every capture source implements.

A source yields `pivh_live.frames.Frame` objects. Each frame is stamped once,
when it is captured, with the source's clock (``time.monotonic_ns`` unless a
test injects another) and a sequence number counted from 0 per source.

Images are uint8, either gray ``(H, W)`` or BGR ``(H, W, 3)``: capture cards
and network streams keep the scanner's colour screen as BGR (the region crop
and `pivh_live.preprocess` convert to gray later), file and phantom sources
give gray because `pivh_live.media` and the phantom decode to gray.
"""

from __future__ import annotations

import logging
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType

import numpy as np

from pivh_live.errors import SourceError
from pivh_live.frames import Frame

log = logging.getLogger(__name__)

Clock = Callable[[], int]
Sleep = Callable[[float], None]

DEFAULT_READ_TIMEOUT_S = 5.0


class SourceTimeout(SourceError):
    """A live source delivered no new frame within the read timeout."""


@dataclass(frozen=True)
class SourceInfo:
    """What a source is. ``spec`` has passwords and keys replaced by ``***``.

    ``width``/``height`` are 0 and ``fps`` is 0.0 while unknown (before the
    first frame of a stream). ``live`` is True for sources that drop frames
    to stay current (capture devices, streams, the phantom) and never end.
    """

    spec: str
    kind: str
    width: int
    height: int
    fps: float
    live: bool


@dataclass
class SourceStats:
    """Counters a source keeps while it runs (mutable, for monitoring)."""

    frames: int = 0
    dropped: int = 0


_SECRET_KEYS = r"pass|passwd|password|passphrase|key|token|secret|streamid"


def redact(spec: str) -> str:
    """Hide the password in ``user:pass@host`` and secret query values."""
    spec = re.sub(r"(://[^/:@?#]*):[^/@?#]*@", r"\1:***@", spec)
    return re.sub(rf"([?&](?:{_SECRET_KEYS})=)[^&#]*", r"\1***", spec, flags=re.IGNORECASE)


class Source(ABC):
    """A capture source: ``open()``, ``read()`` frames, ``close()``.

    Use as a context manager (``with create_source(spec) as src``) or iterate
    over it; iteration ends when ``read()`` returns None (end of a file).
    ``open()`` and ``close()`` are idempotent.
    """

    kind: str = "source"

    def __init__(self, spec: str, *, clock: Clock = time.monotonic_ns) -> None:
        self._spec = redact(spec)
        self._clock = clock
        self._seq = 0
        self._opened = False
        self.stats = SourceStats()

    @property
    def info(self) -> SourceInfo:
        width, height, fps = self._geometry()
        return SourceInfo(self._spec, self.kind, width, height, fps, self.live)

    @property
    def live(self) -> bool:
        return True

    def open(self) -> None:
        if not self._opened:
            self._open()
            self._opened = True
            log.debug("opened %s", self._spec)

    def close(self) -> None:
        if self._opened:
            self._opened = False
            self._close()
            log.debug("closed %s (%d frames, %d dropped)", self._spec, *self._counts())

    def read(self, timeout_s: float | None = None) -> Frame | None:
        """Next frame, or None at the end of a finite source.

        Live sources wait at most ``timeout_s`` (None: the source's own read
        timeout) for a new frame, then raise `SourceTimeout`, so a dead cable
        or stream never hangs the caller.
        """
        self.open()
        return self._read(timeout_s)

    def __enter__(self) -> Source:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __iter__(self) -> Iterator[Frame]:
        while (frame := self.read()) is not None:
            yield frame

    def _stamp(self, image: np.ndarray, media_time_s: float, t_ns: int | None = None) -> Frame:
        """Wrap a captured image with the next sequence number and capture time."""
        t = self._clock() if t_ns is None else t_ns
        frame = Frame(self._seq, t, float(media_time_s), image)
        self._seq += 1
        self.stats.frames += 1
        return frame

    def _counts(self) -> tuple[int, int]:
        return self.stats.frames, self.stats.dropped

    @abstractmethod
    def _open(self) -> None: ...

    @abstractmethod
    def _read(self, timeout_s: float | None) -> Frame | None: ...

    @abstractmethod
    def _close(self) -> None: ...

    @abstractmethod
    def _geometry(self) -> tuple[int, int, float]:
        """(width, height, fps) as far as known."""
