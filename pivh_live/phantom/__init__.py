"""Seeded synthetic neonatal cranial-ultrasound phantom with exact labels.

A 3D head model (analytic shapes on a voxel grid) of a ~28-32 week preterm
infant is sliced along planes through the anterior fontanelle; B-mode
images are formed on a polar grid (speckle, PSF, shadowing, log compression)
and scan-converted to a sector. Lesions follow the Papile grades I-IV per
hemisphere. See docs/phantom.md.
"""

from pivh_live.phantom.clip import (
    CaseSpec,
    Clip,
    ClipRenderer,
    FrameLabel,
    RenderedFrame,
    iter_clip_frames,
    render_clip,
    sample_case,
)
from pivh_live.phantom.styles import ScannerStyle, ScreenLayout, sample_style

__all__ = [
    "CaseSpec",
    "Clip",
    "ClipRenderer",
    "FrameLabel",
    "RenderedFrame",
    "ScannerStyle",
    "ScreenLayout",
    "iter_clip_frames",
    "render_clip",
    "sample_case",
    "sample_style",
]
