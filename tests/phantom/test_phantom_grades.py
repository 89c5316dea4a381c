"""Grade-specific image statistics separate the grades."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from phantom_helpers import small_spec

from pivh_live.phantom.clip import Clip, render_clip


def _lesion_contrast(clip: Clip) -> tuple[float, float]:
    """90th percentile gray inside the masks vs median gray in a ring around them."""
    inside, ring = [], []
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9))
    for frame, mask, lab in zip(clip.frames, clip.masks, clip.labels, strict=True):
        if lab.visible_grade > 0:
            around = cv2.dilate(mask.astype(np.uint8), k).astype(bool) & ~mask & (frame > 0)
            inside.append(frame[mask])
            ring.append(frame[around])
    assert inside, "no frame shows the lesion"
    return float(np.percentile(np.concatenate(inside), 90)), float(np.median(np.concatenate(ring)))


@pytest.mark.parametrize(("grade", "seed"), [(1, 110), (2, 121), (3, 130), (4, 140)])
def test_lesions_are_echogenic(grade: int, seed: int) -> None:
    clip = render_clip(small_spec(grade, seed, n_frames=20))
    lesion, around = _lesion_contrast(clip)
    assert lesion > around + 50


def _bright_share(frames: np.ndarray) -> float:
    """Share of pixels brighter than parenchyma + 3 SD in the upper centre of the image."""
    h, w = frames.shape[1:]
    centre = frames[:, int(h * 0.15) : int(h * 0.6), int(w * 0.3) : int(w * 0.7)]
    return float((centre > 140).mean())


def test_severe_and_normal_differ_by_a_simple_statistic() -> None:
    normal = [
        _bright_share(render_clip(small_spec(0, s, n_frames=10)).frames) for s in (100, 101, 102)
    ]
    severe = []
    for grade, s in ((3, 130), (3, 131), (4, 140), (4, 142)):
        clip = render_clip(small_spec(grade, s, n_frames=10))
        shown = [i for i, lab in enumerate(clip.labels) if lab.visible_grade >= 3]
        severe.append(_bright_share(clip.frames[shown]))
    assert np.mean(severe) > 1.5 * np.mean(normal)
    assert np.median(severe) > np.median(normal)
