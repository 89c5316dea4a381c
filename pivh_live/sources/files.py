"""Recorded media as a source: video files, image folders, DICOM (via `pivh_live.media`).

Frames are gray uint8 (H, W), as `pivh_live.media` decodes them. With
``pace=realtime`` (the default) frames are released on the clip's own
timeline, skipping frames the consumer was too slow for, so a file replays
like a scanner feed; ``pace=fast`` releases every frame at once (analysis,
tests). ``loop=1`` starts again at the end and never ends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pivh_live.errors import MediaError
from pivh_live.frames import Frame
from pivh_live.media import DEFAULT_FPS, MediaFrame, MediaInfo, iter_frames, probe_media
from pivh_live.sources.base import Clock, Sleep, Source
from pivh_live.sources.pacing import Pacer
from pivh_live.sources.spec import SourceSpec, boolean, choice, take_options

log = logging.getLogger(__name__)

OPTIONS = {"loop": boolean, "pace": choice("realtime", "fast")}


class FileSource(Source):
    kind = "file"

    def __init__(
        self,
        spec: str,
        path: str | Path,
        *,
        loop: bool = False,
        pace: str = "realtime",
        clock: Clock = time.monotonic_ns,
        sleep: Sleep = time.sleep,
    ) -> None:
        super().__init__(spec, clock=clock)
        self.path = Path(path)
        self.loop = loop
        self._pacer = Pacer(realtime=pace == "realtime", clock=clock, sleep=sleep)
        self._media: MediaInfo | None = None
        self._frames: Iterator[MediaFrame] | None = None
        self._offset_s = 0.0  # timeline offset of the current pass (loops)
        self._pass_frames = 0
        self._last_t = 0.0

    @property
    def live(self) -> bool:
        return self.loop

    def _open(self) -> None:
        self._media = probe_media(self.path)
        self.kind = self._media.kind
        self._start_pass()
        self._offset_s = 0.0
        self._pacer.reset()

    def _start_pass(self) -> None:
        self._frames = iter_frames(self.path)
        self._pass_frames = 0

    def _period_s(self) -> float:
        fps = self._media.fps if self._media is not None else None
        return 1.0 / (fps or DEFAULT_FPS)

    def _next_media_frame(self) -> MediaFrame | None:
        assert self._frames is not None
        mf = next(self._frames, None)
        if mf is None and self.loop:
            if self._pass_frames == 0:
                raise MediaError(f"no frames decoded from {self.path}; check the file")
            self._offset_s += self._last_t + self._period_s()
            self._start_pass()
            mf = next(self._frames, None)
        return mf

    def _read(self, timeout_s: float | None) -> Frame | None:
        period = self._period_s()
        while (mf := self._next_media_frame()) is not None:
            self._pass_frames += 1
            self._last_t = mf.t
            if self._pacer.admit(self._offset_s + mf.t, period):
                return self._stamp(mf.image, mf.t)
            self.stats.dropped += 1
        return None

    def _close(self) -> None:
        self._frames = None

    def _geometry(self) -> tuple[int, int, float]:
        m = self._media
        if m is None:
            return 0, 0, 0.0
        return m.width, m.height, float(m.fps or DEFAULT_FPS)


def create(
    spec: SourceSpec, *, clock: Clock = time.monotonic_ns, sleep: Sleep = time.sleep, **_: Any
) -> FileSource:
    opts = take_options(spec, OPTIONS, {"loop": False, "pace": "realtime"})
    return FileSource(
        spec.text, spec.target, loop=opts["loop"], pace=opts["pace"], clock=clock, sleep=sleep
    )
