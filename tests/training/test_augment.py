"""Augmentation: seeded determinism, mask alignment under geometry, intensity invariants."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pivh_live.training import augment as A
from pivh_live.training.augment import AugmentConfig, Augmenter

BOX = (32, 0, 192, 256)  # a 4:3 region letterboxed to 256


def _speckle_image(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = np.zeros((256, 256), dtype=np.uint8)
    top, left, h, w = BOX
    image[top : top + h, left : left + w] = np.clip(rng.rayleigh(40, (h, w)), 1, 120)
    return image


def _square(y: int, x: int, side: int = 24) -> tuple[np.ndarray, np.ndarray]:
    image = _speckle_image()
    mask = np.zeros((256, 256), dtype=np.uint8)
    image[y : y + side, x : x + side] = 250
    mask[y : y + side, x : x + side] = 255
    return image, mask


def _centroid(a: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(a)
    return np.array([ys.mean(), xs.mean()])


GEOMETRIC_ONLY = AugmentConfig(
    p_flip=0.5,
    p_rotate=1.0,
    p_depth=1.0,
    p_shift=1.0,
    p_gain=0.0,
    p_gamma=0.0,
    p_dynamic_range=0.0,
    p_speckle=0.0,
    p_blur=0.0,
    p_noise=0.0,
)


@pytest.mark.parametrize("seed", range(6))
def test_mask_follows_image_under_geometry(seed: int) -> None:
    image, mask = _square(120, 150)
    out, out_mask = Augmenter(GEOMETRIC_ONLY)(image, mask, BOX, np.random.default_rng(seed))
    bright = out > 200
    assert bright.sum() > 100 and (out_mask > 127).sum() > 100
    np.testing.assert_allclose(_centroid(bright), _centroid(out_mask > 127), atol=1.0)
    assert not np.array_equal(out_mask, mask)


def test_augmenter_is_deterministic_per_seed() -> None:
    image, mask = _square(100, 100)
    aug = Augmenter(AugmentConfig(p_speckle=1.0, p_noise=1.0, p_blur=1.0, p_rotate=1.0))
    a = aug(image, mask, BOX, np.random.default_rng(7))
    b = aug(image, mask, BOX, np.random.default_rng(7))
    c = aug(image, mask, BOX, np.random.default_rng(8))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_inputs_are_not_modified_and_none_mask_passes() -> None:
    image, _ = _square(100, 100)
    before = image.copy()
    out, mask = Augmenter(AugmentConfig(p_noise=1.0))(image, None, BOX, np.random.default_rng(0))
    assert mask is None and out.dtype == np.uint8 and out.shape == image.shape
    assert np.array_equal(image, before)


def test_padding_stays_black() -> None:
    image, mask = _square(100, 100)
    config = AugmentConfig(p_noise=1.0, p_speckle=1.0, p_gain=1.0, p_dynamic_range=1.0)
    for seed in range(5):
        out, _ = Augmenter(config)(image, mask, BOX, np.random.default_rng(seed))
        assert out[:32].max() == 0 and out[224:].max() == 0


def test_disabled_config_is_identity() -> None:
    image, mask = _square(100, 100)
    out, out_mask = Augmenter(AugmentConfig(enabled=False))(
        image, mask, BOX, np.random.default_rng(0)
    )
    assert out is image and out_mask is mask


def test_rotation_keeps_the_apex_fixed() -> None:
    image = np.zeros((256, 256), dtype=np.uint8)
    image[32:36, 126:130] = 255  # at the apex (top centre of the content box)
    image[200:204, 126:130] = 255  # deep on the midline
    out, _ = A.rotate(image, None, np.random.default_rng(3), 15.0, BOX)
    assert out[32:36, 126:130].mean() > 120
    assert out[200:204, 126:130].mean() < 60


def test_depth_scales_about_the_apex() -> None:
    image, mask = _square(150, 116)
    rng = np.random.default_rng(0)
    _out, out_mask = A.depth(image, mask, rng, (1.2, 1.2), BOX)
    # distance from the apex (row 32, column 127.5) grows by 1.2
    before = _centroid(mask > 127) - [32.0, 127.5]
    after = _centroid(out_mask > 127) - [32.0, 127.5]
    np.testing.assert_allclose(after, 1.2 * before, atol=1.0)


def test_flip_twice_is_identity_and_swaps_sides() -> None:
    image, mask = _square(100, 40)
    once, once_mask = A.flip(image, mask, BOX)
    assert _centroid(once_mask > 127)[1] > 128
    twice, twice_mask = A.flip(once, once_mask, BOX)
    assert np.array_equal(twice, image) and np.array_equal(twice_mask, mask)


def test_intensity_curves_keep_black_and_order() -> None:
    image = np.arange(256, dtype=np.uint8).reshape(16, 16)
    rng = np.random.default_rng(0)
    for fn, span in ((A.gain, (1.3, 1.3)), (A.gamma, (0.7, 0.7)), (A.dynamic_range, (0.8, 0.8))):
        out = fn(image, rng, span)
        flat = out.ravel()
        assert flat[0] == 0
        assert np.all(np.diff(flat.astype(int)) >= 0)
    assert A.gain(image, rng, (1.3, 1.3)).ravel()[100] == round(100 * 1.3)
    # dynamic range 0.8: gray' = 255 + (gray - 255) * 0.8
    assert A.dynamic_range(image, rng, (0.8, 0.8)).ravel()[100] == round(255 - 155 * 0.8)


def test_speckle_is_multiplicative_with_unit_mean() -> None:
    image = np.full((128, 128), 100, dtype=np.uint8)
    image[:, :64] = 0
    out = A.speckle(image, np.random.default_rng(1), (0.3, 0.3)).astype(float)
    assert out[:, :64].max() == 0
    right = out[:, 64:]
    assert abs(right.mean() - 100) < 3 and 20 < right.std() < 40


def test_noise_only_inside_the_box() -> None:
    image = np.full((256, 256), 50, dtype=np.uint8)
    out = A.add_noise(image, np.random.default_rng(0), (5.0, 5.0), BOX)
    assert np.array_equal(out[:32], image[:32]) and np.array_equal(out[224:], image[224:])
    assert 3.0 < out[32:224].astype(float).std() < 7.0


def test_blur_smooths() -> None:
    image = _speckle_image(3)
    out = A.blur(image, np.random.default_rng(0), (1.2, 1.2))
    assert (
        np.abs(np.diff(out.astype(float), axis=1)).mean()
        < np.abs(np.diff(image.astype(float), axis=1)).mean()
    )


ROTATE_ONLY = dataclasses.replace(
    GEOMETRIC_ONLY, p_flip=0.0, p_depth=0.0, p_shift=0.0, max_rotate_deg=30.0
)


@pytest.mark.parametrize("seed", range(4))
def test_rotation_under_stretch_is_a_true_rotation(seed: int) -> None:
    # A region 1.6x wider than tall stretched to the square: rows are 1.6x too tall.
    k = 1.6
    image, mask = _square(100, 170, side=16)
    full = (0, 0, 256, 256)
    apex = np.array([0.0, 127.5])
    unstretch = np.array([1.0 / k, 1.0])  # (row, column) scale back to true proportions

    def true_distance(m: np.ndarray) -> float:
        return float(np.linalg.norm((_centroid(m > 127) - apex) * unstretch))

    rng = np.random.default_rng(seed)
    _out, right = Augmenter(ROTATE_ONLY)(image, mask, full, rng, stretch=k)
    _out, naive = Augmenter(ROTATE_ONLY)(image, mask, full, np.random.default_rng(seed))
    before = true_distance(mask)
    assert true_distance(right) == pytest.approx(before, abs=1.5)
    # Rotating the stretched pixels directly distorts the anatomy.
    assert abs(true_distance(naive) - before) > 2.0 * abs(true_distance(right) - before)


def test_aspect_scales_height_about_the_apex_only() -> None:
    image, mask = _square(150, 116)
    config = dataclasses.replace(ROTATE_ONLY, p_rotate=0.0, p_aspect=1.0, aspect=(1.2, 1.2))
    _out, out_mask = Augmenter(config)(image, mask, BOX, np.random.default_rng(0))
    before = _centroid(mask > 127) - [32.0, 127.5]
    after = _centroid(out_mask > 127) - [32.0, 127.5]
    np.testing.assert_allclose(after, [1.2 * before[0], before[1]], atol=1.0)


def test_aspect_off_draws_nothing() -> None:
    # p_aspect 0 (the default) must leave the random sequence of older configs alone.
    image, mask = _square(100, 100)
    a, b, c = (np.random.default_rng(5) for _ in range(3))
    Augmenter(AugmentConfig())(image, mask, BOX, a)
    Augmenter(AugmentConfig(p_aspect=0.0, aspect=(0.5, 2.0)))(image, mask, BOX, b)
    Augmenter(AugmentConfig(p_aspect=0.5))(image, mask, BOX, c)
    after_a, after_b, after_c = a.random(), b.random(), c.random()
    assert after_a == after_b
    assert after_c != after_a  # switched on, it takes its own draw


ZOOM_ONLY = dataclasses.replace(
    GEOMETRIC_ONLY, p_flip=0.0, p_rotate=0.0, p_depth=0.0, p_shift=0.0, p_zoom=1.0, zoom=(1.5, 2.0)
)


@pytest.mark.parametrize("seed", range(8))
def test_zoom_keeps_every_lesion_pixel_in_view(seed: int) -> None:
    image, mask = _square(60 + 15 * seed, 20 + 25 * seed, side=20)
    out, out_mask = Augmenter(ZOOM_ONLY)(image, mask, BOX, np.random.default_rng(seed))
    area = (out_mask > 127).sum()
    # Magnified 1.5-2x in each direction and nothing cut off: 2.25-4x the area.
    assert 2.0 * (mask > 127).sum() <= area <= 4.2 * (mask > 127).sum()
    top, left, h, w = BOX
    ys, xs = np.nonzero(out_mask)
    assert ys.min() > top and ys.max() < top + h - 1 and xs.min() > left and xs.max() < left + w - 1
    np.testing.assert_allclose(_centroid(out > 200), _centroid(out_mask > 127), atol=1.0)


def test_zoom_shrinks_to_fit_a_large_lesion() -> None:
    image, mask = _square(80, 60, side=130)
    _out, out_mask = Augmenter(ZOOM_ONLY)(image, mask, BOX, np.random.default_rng(0))
    ys, xs = np.nonzero(out_mask > 127)
    assert 130 < xs.max() - xs.min() + 1 <= 192 + 1  # zoomed, but at most to the box height
    assert ys.min() >= 32 and ys.max() <= 32 + 192


def test_zoom_fills_the_box_on_a_normal_frame() -> None:
    image = _speckle_image()
    out, out_mask = Augmenter(ZOOM_ONLY)(image, None, BOX, np.random.default_rng(1))
    assert out_mask is None
    top, left, h, w = BOX
    assert (out[top : top + h, left : left + w] > 0).mean() > 0.99
    assert not np.array_equal(out, image)


def test_zoom_is_skipped_when_the_lesion_is_not_marked() -> None:
    image, _mask = _square(100, 100)
    out, _ = Augmenter(ZOOM_ONLY)(image, None, BOX, np.random.default_rng(2), may_zoom=False)
    np.testing.assert_array_equal(out, image)


def test_zoom_off_draws_nothing() -> None:
    image, mask = _square(100, 100)
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    Augmenter(AugmentConfig())(image, mask, BOX, a)
    Augmenter(AugmentConfig(p_zoom=0.0, zoom=(3.0, 4.0)))(image, mask, BOX, b)
    assert a.random() == b.random()
