"""Image formation: gray levels and speckle statistics in the clinical ranges."""

from __future__ import annotations

import numpy as np
import pytest

from pivh_live.phantom.imaging import ImageFormer, SpeckleField
from pivh_live.phantom.scanconv import sector_geometry
from pivh_live.phantom.styles import sample_style


def _uniform_image(seed: int, value: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    st = sample_style(rng)
    geom = sector_geometry(st)
    former = ImageFormer(st, geom)
    speckle = SpeckleField(rng, (geom.n_beams, geom.n_samples), st.speckle_r)
    amp = np.full((geom.n_beams, geom.n_samples), value, dtype=np.float32)
    img = geom.convert(former.form_echo(former.echo(amp)[0], speckle.next(), 0.0))
    return img[geom.inside]


@pytest.mark.parametrize("seed", range(4))
def test_parenchyma_speckle_in_clinical_range(seed: int) -> None:
    v = _uniform_image(seed, 1.0)
    assert 65.0 <= v.mean() <= 97.0
    assert 12.0 <= v.std() <= 23.0


@pytest.mark.parametrize("seed", range(3))
def test_csf_dark_choroid_bright(seed: int) -> None:
    # CSF shows only the electronic noise floor, a dark gray (4-25 by style).
    assert 2.0 < _uniform_image(seed, 0.02).mean() < 30.0
    assert 140.0 <= _uniform_image(seed, 3.0).mean() <= 200.0


def test_speckle_is_temporally_correlated() -> None:
    field = SpeckleField(np.random.default_rng(0), (64, 64), 0.9)
    a = field.next().copy()
    b = field.next()
    r = np.corrcoef(a.ravel(), b.ravel())[0, 1]
    assert 0.85 < r < 0.95
    assert abs(float(np.mean(b**2)) - 0.5) < 0.05  # unit mean power per complex sample


def test_bone_shadows_what_lies_behind() -> None:
    rng = np.random.default_rng(3)
    st = sample_style(rng)
    geom = sector_geometry(st)
    former = ImageFormer(st, geom)
    field = SpeckleField(rng, (geom.n_beams, geom.n_samples), st.speckle_r)
    amp = np.ones((geom.n_beams, geom.n_samples), dtype=np.float32)
    half = geom.n_beams // 2
    amp[:half, 40:48] = 8.0  # a bone plate over the left half of the beams
    polar = former.form_echo(former.echo(amp)[0], field.next(), 0.0)
    behind = slice(80, geom.n_samples)
    assert polar[:half, behind].mean() < 0.3 * polar[half:, behind].mean()


def test_noise_floor_fills_the_empty_sector() -> None:
    """No echo at all (probe in air): the fan still shows dark-gray noise, brighter deep."""
    rng = np.random.default_rng(7)
    st = sample_style(rng)
    geom = sector_geometry(st)
    former = ImageFormer(st, geom)
    speckle = SpeckleField(rng, (geom.n_beams, geom.n_samples), st.speckle_r)
    polar = former.blank(rng, speckle.next(), 0.0)
    img = geom.convert(polar)
    assert 3.0 < img[geom.inside].mean() < 35.0
    assert not img[~geom.inside].any()
    n = geom.n_samples
    assert polar[:, n // 2 :].mean() > polar[:, n // 8 : n // 4].mean()


def test_bone_shadows_what_lies_behind_it() -> None:
    rng = np.random.default_rng(0)
    st = sample_style(rng)
    geom = sector_geometry(st)
    former = ImageFormer(st, geom)
    amp = np.ones((geom.n_beams, geom.n_samples), dtype=np.float32)
    beams, depth = slice(10, 20), geom.n_samples // 3
    amp[beams, depth : depth + 20] = 8.0  # bone on a few beams
    echo, transmission = former.echo(amp)
    assert transmission.shape == amp.shape and transmission.max() <= 1.0
    assert (transmission[:, : depth - 2] == 1.0).all()  # nothing in front of bone is shadowed
    assert (transmission[beams, depth + 25 :] < 0.01).all()  # behind it, almost nothing
    assert (transmission[30:, :] == 1.0).all()  # other beams are untouched
    assert echo[beams, depth + 25 :].max() < 0.05 * echo[30:, depth + 25 :].min()
