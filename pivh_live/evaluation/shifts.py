"""Acquisition shifts for a robustness check: ``pivh-live evaluate --shift NAME=VALUE``.

A model trained on one scanner (here: one phantom generator) meets others with
another gain, gamma, black level, clipping level, lateral resolution, noise
or video compression. Each shift here re-renders the decoded, region-cropped gray frames
the way such a scanner or capture chain would, before the engine sees them, so
one evaluation per shift shows how far the metrics move (docs/evaluation.md).
Gain, gamma, blur and noise are the training augmentation's own transforms
(``pivh_live.training.augment``) at one fixed strength. Shifts compose in the
order given; noise is seeded per case, so a rerun scores the same frames.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from pivh_live.errors import ConfigError

SHIFT_SEED = 20261207  # fixed, so the cache key need not carry it


ShiftFn = Callable[[np.ndarray, float, np.random.Generator], np.ndarray]


def _lut(fn: Callable[[np.ndarray, float], np.ndarray]) -> ShiftFn:
    """A shift applied as a 256-entry lookup table built from ``fn(gray, value)``."""

    def apply(frames: np.ndarray, value: float, _rng: np.random.Generator) -> np.ndarray:
        gray = np.arange(256, dtype=np.float64)
        table = np.clip(np.rint(fn(gray, value)), 0, 255).astype(np.uint8)
        return table[frames]

    return apply


def _augment(name: str) -> ShiftFn:
    """The training augmentation ``name`` at one fixed strength, frame by frame."""

    def apply(frames: np.ndarray, value: float, rng: np.random.Generator) -> np.ndarray:
        from pivh_live.training import augment

        fn = getattr(augment, name)
        return np.stack([fn(f, rng, (value, value)) for f in frames])

    return apply


def _downscale(frames: np.ndarray, factor: float, _rng: np.random.Generator) -> np.ndarray:
    import cv2

    h, w = frames.shape[1:]
    small = (max(1, round(w * factor)), max(1, round(h * factor)))
    return np.stack(
        [
            cv2.resize(cv2.resize(f, small, interpolation=cv2.INTER_AREA), (w, h),
                       interpolation=cv2.INTER_LINEAR)
            for f in frames
        ]
    )  # fmt: skip


def _jpeg(frames: np.ndarray, quality: float, _rng: np.random.Generator) -> np.ndarray:
    import cv2

    out = []
    for f in frames:
        ok, buf = cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, round(quality)])
        if not ok:
            raise ConfigError("OpenCV could not JPEG-encode a frame for --shift jpeg")
        out.append(cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE))
    return np.stack(out)


@dataclass(frozen=True)
class _Kind:
    apply: ShiftFn
    low: float
    high: float
    meaning: str


KINDS: dict[str, _Kind] = {
    "gain": _Kind(_augment("gain"), 0.05, 20.0, "gray x VALUE (scanner gain)"),
    "gamma": _Kind(_augment("gamma"), 0.1, 10.0, "255 (gray/255)^VALUE"),
    "haze": _Kind(
        _lut(lambda g, v: v + g * (255.0 - v) / 255.0),
        0.0,
        200.0,
        "black lifted to VALUE gray levels, white kept (a washed-out display)",
    ),
    "clip": _Kind(
        _lut(lambda g, v: np.minimum(g, v)),
        1.0,
        255.0,
        "gray levels above VALUE set to VALUE (bright echoes clipped, nothing brightened)",
    ),
    "blur": _Kind(
        _augment("blur"), 0.1, 20.0, "Gaussian blur, sigma VALUE px (coarser lateral resolution)"
    ),
    "noise": _Kind(
        _augment("add_noise"), 0.0, 100.0, "additive Gaussian noise, SD VALUE gray levels"
    ),
    "downscale": _Kind(
        _downscale, 0.05, 1.0, "resized to VALUE x the size and back (a lower-resolution capture)"
    ),
    "jpeg": _Kind(_jpeg, 1.0, 100.0, "JPEG round trip at quality VALUE (compression artefacts)"),
}


@dataclass(frozen=True)
class Shift:
    """One named shift and its strength, e.g. ``Shift("gain", 0.7)``."""

    name: str
    value: float

    def __post_init__(self) -> None:
        kind = KINDS.get(self.name)
        if kind is None:
            raise ConfigError(f"unknown shift '{self.name}'; use one of {', '.join(sorted(KINDS))}")
        if not (math.isfinite(self.value) and kind.low <= self.value <= kind.high):
            raise ConfigError(
                f"shift {self.name}={self.value:g} is outside [{kind.low:g}, {kind.high:g}]"
            )

    @property
    def text(self) -> str:
        return f"{self.name}={self.value:g}"

    def apply(self, frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``frames`` gray uint8 (T, H, W) -> the shifted frames, same shape and dtype."""
        return KINDS[self.name].apply(frames, self.value, rng)


def parse_shift(spec: str) -> Shift:
    """``"gain=0.7"`` -> Shift("gain", 0.7); a malformed spec raises ConfigError."""
    name, sep, value = spec.partition("=")
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not sep or math.isnan(number):
        raise ConfigError(
            f"--shift '{spec}' is not NAME=VALUE (for example gain=0.7); "
            f"names: {', '.join(sorted(KINDS))}"
        )
    return Shift(name.strip(), number)


def apply_shifts(frames: np.ndarray, shifts: Sequence[Shift], case_index: int) -> np.ndarray:
    """Apply ``shifts`` in order to one case's frames; random ones seeded by the case's index."""
    if not shifts:
        return frames
    rng = np.random.default_rng([SHIFT_SEED, case_index])
    for shift in shifts:
        frames = shift.apply(frames, rng)
    return frames


def describe() -> str:
    """One line per shift for the CLI help."""
    return "; ".join(f"{name}: {k.meaning}" for name, k in KINDS.items())
