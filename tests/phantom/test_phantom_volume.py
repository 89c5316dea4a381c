"""Voxel helpers: distance splats and sampling."""

from __future__ import annotations

import numpy as np

from pivh_live.phantom.volume import (
    Grid,
    max_filter3,
    rotation,
    sample_nearest,
    sample_trilinear,
    smooth_noise,
    splat_ellipsoid,
)


def test_sphere_distance_and_rotation() -> None:
    g = Grid((-10.0, -10.0, -10.0), 0.5, (41, 41, 41))
    d = g.empty()
    splat_ellipsoid(g, d, np.zeros(3), np.array([4.0, 4.0, 4.0]))
    pts = np.array([[6.0, 0, 0], [0, -4.0, 0], [0, 0, 2.0]], dtype=np.float32)
    assert np.allclose(sample_trilinear(d, g, pts), [2.0, 0.0, -2.0], atol=0.15)
    e = g.empty()
    rot = rotation(np.array([0.0, 1.0, 0.0]), np.array([1.0, 0.0, 0.0]))
    splat_ellipsoid(g, e, np.zeros(3), np.array([6.0, 2.0, 2.0]), rot)  # long axis along y
    assert sample_trilinear(e, g, np.array([[0, 5.0, 0]], np.float32))[0] < 0
    assert sample_trilinear(e, g, np.array([[5.0, 0, 0]], np.float32))[0] > 0


def test_trilinear_exact_on_linear_field_and_zero_outside() -> None:
    g = Grid((0.0, 0.0, 0.0), 1.0, (5, 6, 7))
    x, y, z = g.coords((slice(None),) * 3)
    vol = (x + 2 * y - z + 0 * x * y * z).astype(np.float32)
    pts = np.array([[1.3, 2.7, 4.1], [3.9, 0.2, 5.5], [50, 0, 0]], dtype=np.float32)
    got = sample_trilinear(vol, g, pts)
    assert np.allclose(got[:2], pts[:2, 0] + 2 * pts[:2, 1] - pts[:2, 2], atol=1e-4)
    assert got[2] == 0
    codes = np.zeros(g.shape, np.uint8)
    codes[2, 3, 4] = 7
    assert sample_nearest(
        codes, g, np.array([[2.2, 2.8, 4.4], [2.6, 3, 4]], np.float32)
    ).tolist() == [7, 0]
    grown = max_filter3(codes)
    assert grown[1:4, 2:5, 3:6].min() == 7 and grown.sum() == 7 * 27


def test_smooth_noise_unit_and_seeded() -> None:
    a = smooth_noise(np.random.default_rng(1), (30, 40, 20), (4, 5, 3))
    b = smooth_noise(np.random.default_rng(1), (30, 40, 20), (4, 5, 3))
    assert np.array_equal(a, b)
    assert abs(a.mean()) < 1e-4 and abs(a.std() - 1) < 1e-3
    # Smooth: neighbouring samples are strongly correlated.
    assert np.corrcoef(a[:-1].ravel(), a[1:].ravel())[0, 1] > 0.9
