"""Acquisition shifts for `pivh-live evaluate --shift`: each does what its name says."""

from __future__ import annotations

import numpy as np
import pytest

from pivh_live.errors import ConfigError
from pivh_live.evaluation.shifts import KINDS, Shift, apply_shifts, parse_shift


def _frames(seed: int = 0) -> np.ndarray:
    """Three 48x64 frames: a bright disc on a textured background, black border."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:48, :64]
    base = 60 + 40 * np.sin(xx / 3.0) * np.cos(yy / 4.0)
    base[(yy - 24) ** 2 + (xx - 30) ** 2 < 80] = 200
    base[:, :4] = 0
    return np.stack(
        [np.clip(base + rng.normal(0, 3, base.shape), 0, 255) for _ in range(3)]
    ).astype(np.uint8)


def _apply(spec: str, frames: np.ndarray, case_index: int = 0) -> np.ndarray:
    out = apply_shifts(frames, [parse_shift(spec)], case_index)
    assert out.shape == frames.shape and out.dtype == np.uint8
    return out


def test_gray_level_shifts_follow_their_formula() -> None:
    frames = _frames()
    gained = _apply("gain=0.5", frames)
    assert np.array_equal(gained, np.rint(frames * 0.5).astype(np.uint8))
    assert _apply("gain=2", frames).max() == 255  # saturates, no wrap-around
    gamma = _apply("gamma=2", frames)
    assert np.array_equal(gamma, np.rint(255 * (frames / 255.0) ** 2).astype(np.uint8))
    hazy = _apply("haze=40", frames)
    assert hazy.min() == 40 and hazy[frames == 0].max() == 40
    assert np.all(hazy >= frames)  # lifts every gray level, keeps white at white
    assert _apply("haze=40", np.full((1, 2, 2), 255, np.uint8)).min() == 255
    clipped = _apply("clip=100", frames)
    assert clipped.max() == 100 and np.array_equal(clipped, np.minimum(frames, 100))
    # gain 2 clips the pixels above 127 (to 255); clip=127 flattens the same ones, unbrightened
    assert np.array_equal(_apply("gain=2", frames) == 255, frames >= 128)


def test_resolution_and_compression_shifts_lose_detail_but_keep_the_picture() -> None:
    frames = _frames()
    detail = float(np.abs(np.diff(frames.astype(float), axis=2)).mean())
    for spec in ("blur=2", "downscale=0.33"):
        out = _apply(spec, frames).astype(float)
        assert float(np.abs(np.diff(out, axis=2)).mean()) < 0.8 * detail, spec
        assert abs(out.mean() - frames.mean()) < 3.0, spec
    assert np.array_equal(_apply("downscale=1", frames), frames)
    err = {
        q: float(np.abs(_apply(f"jpeg={q}", frames) - frames.astype(float)).mean())
        for q in (10, 95)
    }
    assert err[10] > 2 * err[95] and err[10] > 1.0  # lower quality, larger artefacts


def test_noise_is_seeded_per_case_and_has_its_sd() -> None:
    frames = np.full((4, 64, 64), 128, np.uint8)
    a, b = _apply("noise=10", frames, 3), _apply("noise=10", frames, 3)
    assert np.array_equal(a, b)  # a rerun scores the same frames
    assert not np.array_equal(a, _apply("noise=10", frames, 4))
    assert abs(float(a.astype(float).std()) - 10.0) < 0.5


def test_shifts_compose_in_order_and_none_is_identity() -> None:
    frames = _frames()
    assert apply_shifts(frames, [], 0) is frames
    both = apply_shifts(frames, [Shift("haze", 50), Shift("gain", 0.5)], 0)
    other = apply_shifts(frames, [Shift("gain", 0.5), Shift("haze", 50)], 0)
    assert both.min() == 25 and other.min() == 50


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("gain", "not NAME=VALUE"),
        ("gain=x", "not NAME=VALUE"),
        ("tint=2", "unknown shift 'tint'"),
        ("blur=0", "outside"),
        ("downscale=2", "outside"),
        ("noise=inf", "outside"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_shift(spec)


def test_every_kind_has_a_working_midrange_value() -> None:
    frames = _frames()
    for name, kind in KINDS.items():
        value = (kind.low + kind.high) / 2 if name != "jpeg" else 50
        assert Shift(name, value).text.startswith(f"{name}=")
        _apply(f"{name}={value}", frames)
