"""Head model: ventricle size per grade, clot filling, lesion labels in the volume."""

from __future__ import annotations

import numpy as np
import pytest

from pivh_live.phantom.head import build_head


@pytest.mark.parametrize("seed", [1, 2])
def test_grade3_dilates_grade0_does_not(seed: int) -> None:
    head = build_head(np.random.default_rng(seed), 3, 0)
    right, left = head.ventricles
    assert 7.0 <= left.ahw_mm <= 21.0  # dilated, blood-filled
    assert right.ahw_mm < 6.0
    assert head.clot_fraction[1] > 0.5
    assert int(head.code.max()) == 3


def test_grade2_clot_is_small_and_ventricle_normal() -> None:
    head = build_head(np.random.default_rng(4), 0, 2)
    right, _ = head.ventricles
    assert right.ahw_mm < 6.0
    assert 0.0 < head.clot_fraction[-1] < 0.5


def test_grade4_has_infarct_and_same_side_ivh() -> None:
    head = build_head(np.random.default_rng(6), 4, 0)
    kinds = {(les.kind, les.side) for les in head.lesions}
    assert ("infarct", 1) in kinds and ("ivh", 1) in kinds
    # The infarct lies in the white matter lateral to the ventricle.
    inf = next(les for les in head.lesions if les.kind == "infarct")
    assert inf.centroid[0] > head.ventricles[1].groove[0] - 2.0
    # Labelled 4 in the volume where it lies.
    g = head.grid
    codes = []
    for lobe in inf.lobes:
        idx = np.rint((lobe.center - np.array(g.origin)) / g.spacing).astype(int)
        codes.append(int(head.code[tuple(idx)]))
    assert 4 in codes


def test_grade0_has_no_lesion_but_a_target() -> None:
    head = build_head(np.random.default_rng(7), 0, 0, frozenset({"bulky_choroid", "blush"}))
    assert not head.lesions and not head.code.any() and head.lesion_occ.max() == 0
    assert np.all(np.isfinite(head.target))
    # Choroid plexus is echogenic; CSF in the lumen is anechoic.
    assert head.amp.max() > 2.4 and head.amp.min() < 0.1
