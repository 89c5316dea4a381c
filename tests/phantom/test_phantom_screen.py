"""Screen-capture mode: region at the recorded ROI, fake identifiers outside it."""

from __future__ import annotations

import numpy as np
from phantom_helpers import small_spec

from pivh_live.phantom.clip import ClipRenderer
from pivh_live.phantom.screen import fake_identity


def _overlaps(box: tuple[int, int, int, int], roi) -> bool:
    x, y, w, h = box
    return not (x + w <= roi.x or roi.x + roi.w <= x or y + h <= roi.y or roi.y + roi.h <= y)


def test_screen_region_at_roi_and_text_outside() -> None:
    r = ClipRenderer(small_spec(2, seed=21, n_frames=3, screen=True))
    frames = list(r.frames())
    roi = r.roi
    full = frames[0].image
    assert full.shape in ((1080, 1920), (720, 1280))
    assert (
        roi.x >= 0
        and roi.x + roi.w <= full.shape[1]
        and roi.y >= 0
        and roi.y + roi.h <= full.shape[0]
    )
    assert (roi.h, roi.w) == (r.geom.height, r.geom.width) == frames[0].mask.shape
    for f in frames:
        assert np.array_equal(roi.crop(f.image), f.region)
        assert f.region.any()
    # Only sector pixels are lit inside the ROI, and the ROI is the sector's bounding box.
    assert not frames[0].region[~r.geom.inside].any()
    inside = r.geom.inside
    assert inside.any(axis=0)[[0, -1]].all() and inside.any(axis=1)[[0, -1]].all()
    # Burned-in text: several boxes, none touching the image region, all drawn.
    boxes = r.screen.text_boxes
    assert len(boxes) >= 5
    for box in boxes:
        assert not _overlaps(box, roi)
    x, y, w, h = boxes[0]
    patch = full[y : y + h, x : x + w]
    assert patch.max() > 150  # the fake name is drawn


def test_fake_identity_is_random_and_fake() -> None:
    a = fake_identity(np.random.default_rng(1))
    b = fake_identity(np.random.default_rng(2))
    assert a["name"] != b["name"] and a["id"] != b["id"]
    assert a["name"].replace("^", "").isalpha()
