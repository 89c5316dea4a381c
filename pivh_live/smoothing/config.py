"""Settings of the temporal smoother: operating thresholds and durations.

Durations are in seconds of capture time, never in frames, so the same
config behaves the same at 20, 25, 30 or 60 fps. Defaults and their reasons
are in docs/smoothing.md.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pivh_live.errors import ConfigError

NS_PER_S = 1_000_000_000


def seconds_to_ns(seconds: float) -> int:
    return round(seconds * NS_PER_S)


@dataclass(frozen=True)
class SmoothingConfig:
    """Thresholds on smoothed probabilities and the durations that debounce them.

    ``pivh_threshold`` applies to P(grade >= I), ``severe_threshold`` to
    P(grade >= III); ``grade2_threshold`` / ``grade4_threshold`` to
    P(grade >= II) / P(grade >= IV). The alert turns off below each threshold
    minus ``hysteresis`` (never below ``offset_floor``).
    """

    pivh_threshold: float = 0.5
    severe_threshold: float = 0.5
    valid_threshold: float = 0.5
    grade2_threshold: float = 0.5
    grade4_threshold: float = 0.5
    ema_tau_s: float = 0.3
    hysteresis: float = 0.15
    offset_floor: float = 0.05
    onset_min_s: float = 0.3
    offset_min_s: float = 1.0
    grade_min_s: float = 0.5
    invalid_min_s: float = 0.2
    frozen_motion_eps: float = 0.5
    frozen_min_s: float = 1.0
    gap_reset_s: float = 2.0
    max_keyframes: int = 32

    def __post_init__(self) -> None:
        for name in (
            "pivh_threshold",
            "severe_threshold",
            "valid_threshold",
            "grade2_threshold",
            "grade4_threshold",
        ):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0.0 < value < 1.0):
                raise ConfigError(f"smoothing {name}={value!r} must be a number in (0, 1)")
        for name in (
            "ema_tau_s",
            "hysteresis",
            "offset_floor",
            "onset_min_s",
            "offset_min_s",
            "grade_min_s",
            "invalid_min_s",
            "frozen_motion_eps",
            "frozen_min_s",
        ):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0.0):
                raise ConfigError(f"smoothing {name}={value!r} must be a finite number >= 0")
        if not (isinstance(self.gap_reset_s, (int, float)) and self.gap_reset_s > 0.0):
            raise ConfigError(f"smoothing gap_reset_s={self.gap_reset_s!r} must be > 0")
        if not (isinstance(self.max_keyframes, int) and self.max_keyframes >= 1):
            raise ConfigError(f"smoothing max_keyframes={self.max_keyframes!r} must be an int >= 1")

    @classmethod
    def from_thresholds(
        cls, pivh: float, severe: float, valid: float = 0.5, **overrides: Any
    ) -> SmoothingConfig:
        """Config from the operating thresholds chosen on validation data."""
        return cls.from_dict(
            {"pivh_threshold": pivh, "severe_threshold": severe, "valid_threshold": valid}
            | overrides
        )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> SmoothingConfig:
        """Config from a mapping (e.g. a model card); unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"unknown smoothing setting(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def onset_thresholds(self) -> tuple[float, float, float, float]:
        """Thresholds on P(grade >= g) for g = I..IV."""
        return (
            self.pivh_threshold,
            self.grade2_threshold,
            self.severe_threshold,
            self.grade4_threshold,
        )

    @property
    def offset_thresholds(self) -> tuple[float, float, float, float]:
        """Thresholds the alert must fall below (all of them) to turn off."""
        return tuple(  # type: ignore[return-value]
            min(thr, max(thr - self.hysteresis, self.offset_floor)) for thr in self.onset_thresholds
        )

    @property
    def offset_threshold(self) -> float:
        """Offset threshold on P(grade >= I), the any-PIVH score."""
        return self.offset_thresholds[0]
