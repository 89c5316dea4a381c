import cv2
import numpy as np
import pytest

from pivh_live.preprocess import (
    INPUT_SIZE,
    NORM_MIN_SPAN,
    NORM_TARGET,
    check_norm,
    heatmap_to_region,
    letterbox,
    letterbox_geometry,
    norm_params,
    normalize,
    preprocess,
    preprocess_batch,
    to_gray,
)


def _disc(h: int, w: int, cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


@pytest.mark.parametrize(
    ("h", "w", "size", "expected"),
    [
        (1080, 1920, 256, (144, 256, 56, 0)),
        (600, 800, 256, (192, 256, 32, 0)),
        (800, 600, 256, (256, 192, 0, 32)),
        (500, 500, 256, (256, 256, 0, 0)),
        (300, 500, 32, (19, 32, 6, 0)),
    ],
)
def test_letterbox_geometry(h, w, size, expected):
    geo = letterbox_geometry(h, w, size)
    assert (geo.content_h, geo.content_w, geo.top, geo.left) == expected
    assert geo.top + geo.content_h <= size and geo.left + geo.content_w <= size


def test_letterbox_pads_with_exact_zeros_and_keeps_content():
    image = np.full((1080, 1920), 255, dtype=np.uint8)
    out = letterbox(image)
    assert out.shape == (INPUT_SIZE, INPUT_SIZE) and out.dtype == np.uint8
    assert np.all(out[56 : 56 + 144] == 255)
    assert np.all(out[:56] == 0) and np.all(out[56 + 144 :] == 0)


def test_letterbox_matches_pad_then_resize_closely():
    # Smooth content: the halving pyramid and the direct area resize agree closely.
    rng = np.random.default_rng(3)
    noise = rng.normal(0, 1, (1080, 1920)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), 25)
    image = cv2.normalize(smooth, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    padded = cv2.copyMakeBorder(image, 420, 420, 0, 0, cv2.BORDER_CONSTANT, value=0)
    reference = cv2.resize(padded, (256, 256), interpolation=cv2.INTER_AREA).astype(np.float32)
    diff = np.abs(letterbox(image).astype(np.float32) - reference)
    assert diff.mean() < 1.0
    assert diff[60:196].max() <= 3  # away from the content border


def test_letterbox_bool_mask_becomes_coverage_fraction():
    mask = np.zeros((300, 600), dtype=bool)
    mask[:, :300] = True
    out = letterbox(mask, size=32)
    assert out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    geo = letterbox_geometry(300, 600, 32)
    area = geo.content_h * geo.content_w
    assert out.sum() == pytest.approx(0.5 * area, rel=0.02)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_letterbox_keeps_dtype_and_channels(dtype):
    image = np.ones((40, 80, 3), dtype=dtype)
    out = letterbox(image, size=16)
    assert out.dtype == dtype and out.shape == (16, 16, 3)


def test_points_map_to_letterbox_and_back():
    geo = letterbox_geometry(700, 1000, 256)
    for x, y in [(0, 0), (999, 699), (512.5, 300.25)]:
        u, v = geo.to_letterbox(x, y)
        assert geo.to_region(u, v) == pytest.approx((x, y))
    # A blob at region (800, 200) lands where to_letterbox says.
    image = (_disc(700, 1000, 800, 200, 20) * 255).astype(np.uint8)
    out = letterbox(image, 256).astype(np.float64)
    vv, uu = np.mgrid[0:256, 0:256]
    centroid = ((out * uu).sum() / out.sum(), (out * vv).sum() / out.sum())
    assert centroid == pytest.approx(geo.to_letterbox(800, 200), abs=0.5)


@pytest.mark.parametrize(("size", "min_iou"), [(32, 0.85), (256, 0.97)])
def test_heatmap_to_region_round_trip(size, min_iou):
    region_shape = (480, 640)
    mask = _disc(*region_shape, cx=420, cy=150, r=60) | _disc(*region_shape, cx=150, cy=330, r=45)
    heatmap = letterbox(mask, size=size)
    back = heatmap_to_region(heatmap[None], region_shape)
    assert back.shape == region_shape and back.dtype == np.float32
    assert _iou(back >= 0.5, mask) >= min_iou


def test_heatmap_to_region_rejects_non_square():
    with pytest.raises(ValueError, match="square"):
        heatmap_to_region(np.zeros((8, 4), np.float32), (10, 10))


def test_to_gray_orders_and_shapes():
    blue_bgr = np.zeros((4, 5, 3), np.uint8)
    blue_bgr[..., 0] = 255
    assert np.all(to_gray(blue_bgr) == 29)  # 0.114 * 255
    assert np.all(to_gray(blue_bgr, order="rgb") == 76)  # first channel read as red: 0.299 * 255
    bgra = np.dstack([blue_bgr, np.full((4, 5), 7, np.uint8)])
    assert np.all(to_gray(bgra) == 29)
    gray = np.arange(20, dtype=np.uint8).reshape(4, 5)
    assert to_gray(gray) is gray
    assert np.array_equal(to_gray(gray[..., None]), gray)
    with pytest.raises(ValueError, match="uint8"):
        to_gray(gray.astype(np.float32))
    with pytest.raises(ValueError, match="order"):
        to_gray(blue_bgr, order="hsv")


def test_preprocess_scales_to_unit_range_with_zero_padding():
    image = np.full((200, 400), 255, dtype=np.uint8)
    x = preprocess(image)
    assert x.shape == (1, INPUT_SIZE, INPUT_SIZE) and x.dtype == np.float32
    assert x.max() == pytest.approx(1.0) and x.min() == 0.0
    assert np.all(x[0, :64] == 0.0) and np.all(x[0, 64:192] == pytest.approx(1.0))


def test_preprocess_batch_matches_single_calls_and_out_buffer():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (h, w), dtype=np.uint8) for h, w in [(300, 500), (256, 256)]]
    batch = preprocess_batch(images)
    assert batch.shape == (2, 1, INPUT_SIZE, INPUT_SIZE)
    for i, image in enumerate(images):
        assert np.array_equal(batch[i], preprocess(image))
    out = np.empty((1, 64, 64), np.float32)
    assert preprocess(images[0], size=64, out=out) is out
    with pytest.raises(ValueError, match="out must be"):
        preprocess(images[0], out=np.empty((1, 64, 64), np.float32))


# -- fit "stretch": the region fills the whole square ------------------------------------


def test_stretch_geometry_fills_the_square():
    geo = letterbox_geometry(548, 944, 320, fit="stretch")
    assert (geo.content_h, geo.content_w, geo.top, geo.left) == (320, 320, 0, 0)
    assert geo.scale_y / geo.scale_x == pytest.approx(944 / 548)
    for x, y in [(0, 0), (943, 547), (500.5, 100.25)]:
        assert geo.to_region(*geo.to_letterbox(x, y)) == pytest.approx((x, y))


def test_stretch_resizes_without_padding():
    yy, xx = np.mgrid[0:300, 0:500]
    image = (20 + 0.3 * xx + 0.2 * yy + 100 * _disc(300, 500, 320, 120, 50)).astype(np.uint8)
    out = letterbox(image, 64, fit="stretch")
    assert out.shape == (64, 64) and out.min() > 0  # no zero padding anywhere
    direct = cv2.resize(image, (64, 64), interpolation=cv2.INTER_AREA)
    assert np.abs(out.astype(int) - direct.astype(int)).mean() < 2.0  # 2x pyramid vs direct


def test_stretch_preprocess_matches_batch_and_single():
    rng = np.random.default_rng(4)
    regions = [rng.integers(0, 256, (h, w), dtype=np.uint8) for h, w in [(200, 340), (90, 60)]]
    batch = preprocess_batch(regions, 32, fit="stretch")
    for i, region in enumerate(regions):
        np.testing.assert_array_equal(batch[i], preprocess(region, 32, fit="stretch"))
    assert not np.array_equal(batch[0], preprocess(regions[0], 32))  # letterbox differs


def test_heatmap_to_region_round_trip_under_stretch():
    region_shape = (480, 800)
    mask = _disc(*region_shape, cx=600, cy=150, r=60) | _disc(*region_shape, cx=150, cy=330, r=45)
    heatmap = letterbox(mask, size=256, fit="stretch")
    back = heatmap_to_region(heatmap, region_shape, fit="stretch")
    assert _iou(back >= 0.5, mask) >= 0.97
    # The letterbox mapping would put it in the wrong place.
    wrong = heatmap_to_region(heatmap, region_shape)
    assert _iou(wrong >= 0.5, mask) < 0.8


def test_unknown_fit_is_refused():
    with pytest.raises(ValueError, match="fit must be one of letterbox, stretch"):
        letterbox_geometry(10, 10, 8, fit="crop")


def _sector_picture(seed: int = 0, h: int = 120, w: int = 200) -> np.ndarray:
    """A fan of speckle (gray about 20-150) on black, with one bright blob."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    fan = (np.abs(xx - w / 2) < 0.8 * yy) & (yy > 5)
    tissue = cv2.GaussianBlur(rng.rayleigh(45.0, (h, w)), (0, 0), 1.2)
    tissue[(xx - 120) ** 2 + (yy - 80) ** 2 < 90] += 60.0
    return np.where(fan, np.clip(tissue, 0, 160), 0).astype(np.uint8)


def test_norm_percentiles_are_the_lower_rank_and_none_divides_by_255():
    picture = _sector_picture()
    low, scale = norm_params(picture, "percentile")
    flat = picture.ravel()
    assert low == np.percentile(flat, 1, method="lower")
    high = np.percentile(flat, 99, method="lower")
    assert scale == pytest.approx(NORM_TARGET / max(high - low, NORM_MIN_SPAN))
    assert norm_params(picture) == (0.0, pytest.approx(1 / 255))
    # Bit-identical to the bundles before norms existed (a multiply by 1/255, not a divide).
    np.testing.assert_array_equal(normalize(picture), np.multiply(picture, np.float32(1 / 255)))
    out = normalize(picture, "percentile")
    assert out.dtype == np.float32 and out.min() == 0.0
    assert np.percentile(out, 99, method="lower") == pytest.approx(NORM_TARGET, abs=1e-6)


def test_percentile_norm_undoes_gain_and_black_level():
    picture = _sector_picture(1)
    ref = normalize(picture, "percentile")
    lifted = normalize(picture + np.uint8(30), "percentile")  # a black level of 30, no clipping
    np.testing.assert_allclose(lifted, ref, atol=1e-6)
    brighter = np.rint(picture * 1.5).astype(np.uint8)  # gain 1.5 (max 240, nothing clips)
    np.testing.assert_allclose(normalize(brighter, "percentile"), ref, atol=0.01)
    # Without the norm the same gain moves the input by up to 0.2.
    assert np.abs(normalize(brighter) - normalize(picture)).max() > 0.15


def test_percentile_norm_does_not_stretch_blank_frames():
    np.testing.assert_array_equal(normalize(np.zeros((40, 50), np.uint8), "percentile"), 0.0)
    np.testing.assert_array_equal(normalize(np.full((40, 50), 90, np.uint8), "percentile"), 0.0)
    faint = np.zeros((40, 50), np.uint8)
    faint[10:30, 10:40] = 20  # a span of 20 gray levels is stretched as if it were 64
    assert normalize(faint, "percentile").max() == pytest.approx(20 * NORM_TARGET / NORM_MIN_SPAN)


def test_preprocess_passes_the_norm_through_batch_and_single():
    regions = [_sector_picture(i) for i in range(3)]
    batch = preprocess_batch(regions, 64, fit="stretch", norm="percentile")
    for image, row in zip(regions, batch, strict=True):
        np.testing.assert_array_equal(row, preprocess(image, 64, fit="stretch", norm="percentile"))
        boxed = letterbox(image, 64, cv2.INTER_AREA, "stretch")
        np.testing.assert_array_equal(row[0], normalize(boxed, "percentile"))
    assert not np.array_equal(batch, preprocess_batch(regions, 64, fit="stretch"))


def test_unknown_norm_is_refused():
    assert check_norm("percentile") == "percentile"
    with pytest.raises(ValueError, match="norm must be one of none, percentile"):
        normalize(np.zeros((4, 4), np.uint8), "zscore")
