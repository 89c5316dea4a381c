"""Scanner "styles": per-case acquisition and display settings, sampled widely.

Every clip gets its own depth, sector angle, probe footprint, resolution,
point-spread function, time-gain compensation, dynamic range, gain, gamma and
post-processing, so a model trained on the phantom does not learn one look.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ScreenLayout:
    """Where the image sits on a full scanner screen (HDMI capture look)."""

    width: int
    height: int
    theme: int  # picks the UI chrome variant
    ui_seed: int  # fake identifiers and panel contents


@dataclass(frozen=True)
class ScannerStyle:
    depth_mm: float  # displayed depth below the skin line
    sector_deg: float  # full sector angle
    apex_mm: float  # microconvex footprint radius (0 = point apex)
    n_beams: int
    n_samples: int
    out_h: int  # height of the image region in pixels (even)
    psf_axial_mm: float  # Gaussian sigma along the beam
    psf_lateral_mm: float  # Gaussian sigma across beams at 30 mm
    psf_lateral_growth: float  # extra lateral sigma per 10 mm of depth
    speckle_r: float  # frame-to-frame speckle correlation
    backscatter_exp: float  # tissue backscatter -> echo amplitude exponent
    edge_gain: float  # boundary echo strength from backscatter gradients
    shadow_k: float  # acoustic shadowing behind bone / very bright echoes
    dynamic_range_db: float
    tissue_level: float  # target mean gray of parenchyma before gamma jitter
    gamma: float
    smooth_mm: float  # speckle-reduction smoothing of the log image
    tgc_db: tuple[float, ...]  # residual depth-gain curve, control points over depth
    gain_drift_db: float  # amplitude of slow gain drift during the clip
    noise_gray: float  # displayed gray of the electronic noise floor at the bottom of the fan
    noise_rise_db: float  # noise floor rise from skin to full depth (TGC amplifies deep noise)
    p_freeze: float  # chance per second of a frozen-frame run
    p_lift: float  # chance per clip of a probe-lifted run
    p_off_start: float
    p_off_end: float
    screen: ScreenLayout | None = None


def brain_depth_mm(ga_weeks: float) -> float:
    """Typical depth of the brain's base below the fontanelle skin (see anatomy.sample_shape)."""
    scale = 0.9 + 0.03 * (ga_weeks - 28.0)
    return 0.98 * (2.0 * 36.0 * scale + 6.25)


def sample_style(
    rng: np.random.Generator, screen: bool = False, ga_weeks: float = 30.0
) -> ScannerStyle:
    # Depth is set so the brain fills most of the fan (operators fit the depth
    # to the head), sometimes cutting the skull base; some scanners sit deeper.
    fill = rng.uniform(0.85, 1.1) if rng.random() < 0.75 else rng.uniform(0.72, 0.88)
    depth = brain_depth_mm(ga_weeks) / fill
    sector = rng.uniform(90.0, 120.0)
    dr = rng.uniform(50.0, 60.0) if rng.random() < 0.8 else rng.uniform(45.0, 66.0)
    apex = float(rng.choice([0.0, rng.uniform(3.0, 14.0)]))
    layout = _sample_layout(rng) if screen else None
    if layout is not None:
        # Region must fit the screen's image area (about 75% of its width).
        half = np.deg2rad(sector / 2.0)
        r1 = apex + depth
        aspect = 2.0 * r1 * np.sin(half) / (r1 - apex * np.cos(half))
        out_h = int(min(layout.height * rng.uniform(0.62, 0.8), layout.width * 0.74 / aspect))
    else:
        out_h = int(rng.integers(300, 440))
    return ScannerStyle(
        depth_mm=float(depth),
        sector_deg=float(sector),
        apex_mm=apex,
        n_beams=int(rng.integers(200, 280)),
        n_samples=int(np.clip(depth / rng.uniform(0.24, 0.3), 220, 460)),
        out_h=out_h - out_h % 2,
        psf_axial_mm=float(rng.uniform(0.14, 0.24)),
        psf_lateral_mm=float(rng.uniform(0.28, 0.45)),
        psf_lateral_growth=float(rng.uniform(0.02, 0.06)),
        speckle_r=float(rng.uniform(0.8, 0.95)),
        backscatter_exp=float(rng.uniform(1.8, 2.2)),
        edge_gain=float(rng.uniform(0.4, 1.6)),
        shadow_k=float(rng.uniform(0.8, 2.0)),
        dynamic_range_db=float(dr),
        tissue_level=float(rng.uniform(70.0, 90.0)),
        gamma=float(rng.uniform(0.85, 1.2)),
        smooth_mm=float(rng.uniform(0.08, 0.22)),
        tgc_db=tuple(float(v) for v in rng.normal(0.0, 2.0, 5)),
        gain_drift_db=float(rng.uniform(0.3, 2.0)),
        noise_gray=float(rng.uniform(7.0, 26.0)),
        noise_rise_db=float(rng.uniform(3.0, 12.0)),
        p_freeze=float(rng.uniform(0.0, 0.15)),
        p_lift=float(rng.uniform(0.0, 0.35)),
        p_off_start=float(rng.uniform(0.0, 0.25)),
        p_off_end=float(rng.uniform(0.0, 0.25)),
        screen=layout,
    )


def _sample_layout(rng: np.random.Generator) -> ScreenLayout:
    width, height = (1920, 1080) if rng.random() < 0.6 else (1280, 720)
    return ScreenLayout(
        width=width,
        height=height,
        theme=int(rng.integers(0, 3)),
        ui_seed=int(rng.integers(0, 2**31 - 1)),
    )
