"""Prior correction maths (pivh_live.training.prior)."""

from __future__ import annotations

import numpy as np
import pytest

from pivh_live.errors import DatasetError
from pivh_live.training.prior import effective_prior, logit_offsets, normalised


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def test_effective_prior_follows_the_class_weight_power() -> None:
    pi = np.array([0.5, 0.1, 0.12, 0.17, 0.11])
    assert np.allclose(effective_prior(pi, 0.0), pi / pi.sum())
    assert np.allclose(effective_prior(pi, 1.0), np.full(5, 0.2))
    half = np.sqrt(pi) / np.sqrt(pi).sum()
    assert np.allclose(effective_prior(pi * 1000, 0.5), half)  # counts work as well


def test_offsets_move_a_prior_only_posterior_to_the_target() -> None:
    """A network that knows nothing outputs its effective training prior; corrected, the target."""
    train = np.array([5000, 1000, 1200, 1700, 1100])
    target = np.array([0.74, 0.12, 0.055, 0.045, 0.04])
    power = 0.5
    offsets = np.array(logit_offsets(train, target, power))
    assert offsets[0] == 0.0
    eff = effective_prior(train, power)
    corrected = _softmax(np.log(eff) + offsets)
    assert np.allclose(corrected, target / target.sum(), atol=1e-5)
    # rarer in the target than in training -> pushed down, and the order follows the ratio
    assert np.all(offsets[1:] < 0)
    ratio = np.log(target / target.sum()) - np.log(eff)
    assert np.allclose(offsets, ratio - ratio[0], atol=1e-5)


def test_the_same_prior_gives_no_offsets() -> None:
    pi = np.array([0.3, 0.2, 0.2, 0.15, 0.15])
    assert np.allclose(logit_offsets(pi, pi, 0.0), 0.0)


@pytest.mark.parametrize("bad", [[1, 1, 1, 1], [1, 0, 1, 1, 1], [1, 1, float("nan"), 1, 1]])
def test_a_prior_without_every_grade_is_refused(bad: list[float]) -> None:
    with pytest.raises(DatasetError, match="each of the 5 grades"):
        normalised(bad, "the target prior")
