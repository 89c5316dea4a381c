"""Small, fast phantom specs shared by the phantom tests."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from pivh_live.phantom.clip import CaseSpec, sample_case


def small_spec(
    grade: int,
    seed: int,
    *,
    n_frames: int = 8,
    view: str | None = None,
    screen: bool = False,
    steady: bool = True,
) -> CaseSpec:
    """A case with a coarse polar grid and small region so a clip renders in ~1 s."""
    spec = sample_case(np.random.default_rng(seed), grade=grade, n_frames=n_frames, screen=screen)
    style = replace(spec.style, n_beams=120, n_samples=220)
    if not screen:
        style = replace(style, out_h=180)
    if steady:
        style = replace(style, p_lift=0.0, p_off_start=0.0, p_off_end=0.0, p_freeze=0.0)
    return replace(spec, style=style, view=view or spec.view)
