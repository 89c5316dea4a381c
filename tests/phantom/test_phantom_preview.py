"""Preview contact sheet."""

from __future__ import annotations

from pathlib import Path

import cv2
from phantom_helpers import small_spec

from pivh_live.phantom.clip import render_clip
from pivh_live.phantom.preview import TILE_H, write_preview


def test_preview_has_a_row_per_grade(tmp_path: Path) -> None:
    clips = [render_clip(small_spec(g, seed=60 + g, n_frames=4)) for g in (0, 3)]
    path = write_preview(clips, tmp_path / "p.png")
    img = cv2.imread(str(path))
    assert img is not None and img.shape[0] >= 5 * (TILE_H + 28)
    # The grade III row holds a tile with some bright (lesion) pixels.
    assert img.max() > 150
