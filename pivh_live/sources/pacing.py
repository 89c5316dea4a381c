"""Real-time pacing for sources that could run faster than real time.

``realtime`` releases each frame when its media time is due on the wall
clock, as a scanner would; a frame that is already more than one frame
period late is skipped (counted as dropped), exactly like a capture card
that always shows the newest frame. ``fast`` releases frames at once.
A producer that renders each frame (the phantom) uses ``drop_late=False``:
a late frame was already paid for, so it is shown and the timeline moves on
from it. Clock and sleep are injected so tests never sleep.
"""

from __future__ import annotations

from pivh_live.sources.base import Clock, Sleep


class Pacer:
    def __init__(
        self, *, realtime: bool, clock: Clock, sleep: Sleep, drop_late: bool = True
    ) -> None:
        self.realtime = realtime
        self.drop_late = drop_late
        self._clock = clock
        self._sleep = sleep
        self._t0_ns: int | None = None

    def reset(self) -> None:
        """Restart the timeline: the next frame is due now."""
        self._t0_ns = None

    def admit(self, timeline_s: float, period_s: float) -> bool:
        """Wait until the frame at ``timeline_s`` is due; False if it is too late to show.

        ``timeline_s`` counts from the first frame and keeps growing across
        loops of a clip.
        """
        if not self.realtime:
            return True
        now = self._clock()
        offset = round(timeline_s * 1e9)
        if self._t0_ns is None:
            self._t0_ns = now - offset
        due = self._t0_ns + offset
        if now - due > period_s * 1e9:
            if self.drop_late:
                return False
            self._t0_ns = now - offset
            return True
        if due > now:
            self._sleep((due - now) / 1e9)
        return True
