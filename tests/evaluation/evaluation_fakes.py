"""Clips that the tiny brightness bundle (tests/pipeline/pipeline_fakes.py) grades by construction.

The bundle reads only a frame's mean brightness: grade g is drawn at gray
level 255 (g + 1) / 6 and a black frame is "no brain". Each clip has 20
frames: 0-1 black, 2-7 normal, 8-19 the drawn grade, so a clip drawn at one
grade and labelled another is a known error of a known size.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from pivh_live.media import write_video

N_FRAMES, FIRST_DRAWN = 20, 8


def level(grade: int) -> int:
    """The gray level the bundle reads as ``grade``."""
    return round(255 * (grade + 1) / 6)


def write_clip(
    root: Path, case_id: str, label: int, drawn: int, fps: float, frame_labels: bool = True
) -> None:
    """``case_id``'s lossless video and (unless told not to) its frames.csv into ``root``."""
    levels = [0, 0] + [level(0)] * 6 + [level(drawn)] * (N_FRAMES - FIRST_DRAWN)
    # +-1 gray-level noise keeps consecutive frames distinct (motion > 0.5);
    # seeded by the drawn grade, so cases that look alike are byte-identical
    # and their scores tie exactly.
    rng = np.random.default_rng(drawn)
    frames = [np.clip(lv + rng.integers(-1, 2, (40, 40)), 0, 255).astype(np.uint8) for lv in levels]
    write_video(root / f"{case_id}.mkv", frames, fps, codec="ffv1")
    if not frame_labels:
        return
    visible = [-1, -1] + [0] * 6 + [label] * (N_FRAMES - FIRST_DRAWN)
    with open(root / f"{case_id}.frames.csv", "w", newline="") as g:
        fw = csv.writer(g)
        fw.writerow(["frame", "visible_grade"])
        fw.writerows(enumerate(visible))
