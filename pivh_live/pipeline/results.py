"""Frozen dataclasses that cross the live pipeline's stage boundaries, and the consumer protocol.

A `RegionFrame` is what leaves the capture stage: the cropped ultrasound
region only (never the full screen with its burned-in identifiers), with the
capture stamps. A `FrameResult` is what leaves the inference stage: the
model's score, the smoothed `LiveState` and the per-stage stamps. Both carry
``t_capture_ns`` (stamped once, at capture) unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol, runtime_checkable

import numpy as np

from pivh_live.frames import Roi, Score
from pivh_live.smoothing import LiveState

# Display statuses the overlay understands (pivh_live.overlay.DISPLAY_STATUSES).
SOURCE_STATES = ("unknown", "signal", "no_signal", "reconnecting", "ended")
STAGE_STATES = ("starting", "running", "restarting", "finished", "stopped", "failed")


def _frozen_stamps(stamps: Mapping[str, int]) -> Mapping[str, int]:
    return MappingProxyType({str(k): int(v) for k, v in stamps.items()})


@dataclass(frozen=True, eq=False)
class RegionFrame:
    """The cropped image region of one captured frame (a contiguous copy).

    ``roi`` is where the crop lies in the captured frame; ``stamps`` maps
    stage names to ``time.monotonic_ns()`` values ("capture", "crop", and
    transport hops such as "capture.send", "infer.recv").
    """

    seq: int
    t_capture_ns: int
    media_time_s: float
    image: np.ndarray
    roi: Roi
    stamps: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "stamps", _frozen_stamps(self.stamps))


@dataclass(frozen=True, eq=False)
class FrameResult:
    """One scored frame: model output, smoothed state, motion and stage stamps.

    ``motion`` is the mean absolute gray difference to the previously scored
    region (None for the first one or after a size change), the same
    definition as `pivh_live.evaluation.evaluate.frame_motion`.
    """

    seq: int
    t_capture_ns: int
    media_time_s: float
    score: Score
    state: LiveState
    motion: float | None
    roi: Roi | None = None
    stamps: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "stamps", _frozen_stamps(self.stamps))

    @property
    def latency_ns(self) -> int | None:
        """Capture to the last stamp on this result (None without stamps)."""
        if not self.stamps:
            return None
        return max(self.stamps.values()) - self.t_capture_ns


@dataclass(frozen=True)
class PipelineStatus:
    """The whole pipeline's state, sent as a full snapshot so newest-wins loses nothing.

    ``stages`` is ((name, state), ...) with states from `STAGE_STATES`;
    ``source_state`` one of `SOURCE_STATES` with an operator message.
    """

    t_ns: int
    source_state: str = "unknown"
    source_message: str = ""
    stages: tuple[tuple[str, str], ...] = ()
    restarts: int = 0

    def __post_init__(self) -> None:
        if self.source_state not in SOURCE_STATES:
            raise ValueError(f"source_state must be one of {SOURCE_STATES}")
        for name, state in self.stages:
            if state not in STAGE_STATES:
                raise ValueError(f"stage {name} state must be one of {STAGE_STATES}")

    @property
    def display_status(self) -> str | None:
        """What the overlay banner should say instead of a result, or None."""
        if self.source_state in ("no_signal", "reconnecting"):
            return "no_signal"
        states = {state for _, state in self.stages}
        if "restarting" in states or "failed" in states:
            return "restarting"
        if "starting" in states:
            return "starting"
        return None


@runtime_checkable
class ResultConsumer(Protocol):
    """Something that takes results: display, recorder, a JSON-lines writer.

    ``on_result`` gets the region the host has for the result (the very
    frame in single-process mode; the newest received region in
    multi-process mode, whose ``seq`` may be a little newer than the
    result's; None when the consumer set ``needs_frames`` False or no region
    arrived yet). ``on_status`` gets every new `PipelineStatus`. ``close``
    flushes and releases files.
    """

    needs_frames: bool

    def on_result(self, region: RegionFrame | None, result: FrameResult) -> None: ...

    def on_status(self, status: PipelineStatus) -> None: ...

    def close(self) -> None: ...


class BaseConsumer:
    """Convenience base: no frames needed, statuses ignored, nothing to close."""

    needs_frames: bool = False

    def on_result(self, region: RegionFrame | None, result: FrameResult) -> None:
        raise NotImplementedError

    def on_status(self, status: PipelineStatus) -> None:
        """Ignore status changes by default."""

    def close(self) -> None:
        """Nothing to release by default."""
