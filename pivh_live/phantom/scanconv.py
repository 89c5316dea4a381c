"""Sector geometry: beam directions, sample points in the head, scan conversion.

The polar grid is (beams, samples): beam j points at angle phi_j from the
sector axis (negative = image left), sample i lies at radius r_i from the
virtual apex, which sits ``apex_mm`` behind the skin (a microconvex probe
gives a curved top edge). Scan conversion maps it to the image region with
``cv2.remap``; the region is the bounding box of the sector.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pivh_live.phantom.styles import ScannerStyle


@dataclass(frozen=True)
class SectorGeometry:
    phi: np.ndarray  # (n_beams,) radians
    radius: np.ndarray  # (n_samples,) mm from the virtual apex
    apex_mm: float
    px_mm: float
    height: int
    width: int
    map_x: np.ndarray  # (H, W) float32 sample index, -1 outside
    map_y: np.ndarray  # (H, W) float32 beam index, -1 outside
    inside: np.ndarray  # (H, W) bool, pixel lies in the sector

    @property
    def n_beams(self) -> int:
        return len(self.phi)

    @property
    def n_samples(self) -> int:
        return len(self.radius)

    @property
    def dr_mm(self) -> float:
        return float(self.radius[1] - self.radius[0])

    def points(self, origin: np.ndarray, axis: np.ndarray, lateral: np.ndarray) -> np.ndarray:
        """3D positions (n_beams, n_samples, 3) of every polar sample.

        ``origin`` is where the probe touches the skin, ``axis`` the unit sector
        axis (into the head), ``lateral`` the unit direction of the image's right.
        """
        apex = origin - self.apex_mm * axis
        dirs = np.cos(self.phi)[:, None] * axis[None] + np.sin(self.phi)[:, None] * lateral[None]
        pts = apex[None, None] + self.radius[None, :, None] * dirs[:, None, :]
        return pts.astype(np.float32)

    def convert(self, polar: np.ndarray, nearest: bool = False) -> np.ndarray:
        """Scan-convert a (beams, samples) image to the region; outside the sector is 0."""
        interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
        return cv2.remap(
            polar, self.map_x, self.map_y, interp, borderMode=cv2.BORDER_CONSTANT, borderValue=0
        )


def sector_geometry(style: ScannerStyle) -> SectorGeometry:
    half = np.deg2rad(style.sector_deg / 2.0)
    r0 = style.apex_mm
    r1 = r0 + style.depth_mm
    phi = np.linspace(-half, half, style.n_beams).astype(np.float32)
    radius = np.linspace(r0, r1, style.n_samples).astype(np.float32)
    top = r0 * np.cos(half)
    px = (r1 - top) / style.out_h
    width = 2.0 * r1 * np.sin(half) / px
    # Even width, rounded down: a rounded-up column would hold no sector pixel.
    w = max(2 * int(width / 2.0), 2)
    h = style.out_h
    xs = (np.arange(w, dtype=np.float32) + 0.5 - w / 2.0) * px
    ys = top + (np.arange(h, dtype=np.float32) + 0.5) * px
    xx, yy = np.meshgrid(xs, ys)
    rr = np.hypot(xx, yy)
    pp = np.arctan2(xx, yy)
    inside = (rr >= r0) & (rr <= r1) & (np.abs(pp) <= half)
    map_y = ((pp + half) / (2 * half) * (style.n_beams - 1)).astype(np.float32)
    map_x = ((rr - r0) / (r1 - r0) * (style.n_samples - 1)).astype(np.float32)
    map_x[~inside] = -10.0
    map_y[~inside] = -10.0
    return SectorGeometry(phi, radius, r0, float(px), h, w, map_x, map_y, inside)
