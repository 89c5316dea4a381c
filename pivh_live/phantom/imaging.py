"""B-mode image formation on the polar grid (beams x samples).

Per frame: backscatter along the beams + boundary echoes from its gradient
-> acoustic shadowing (cumulative along each beam) -> echo amplitude times
temporally correlated complex Gaussian scatterers (Rayleigh speckle) ->
separable Gaussian PSF (axial fixed, lateral widening with depth) ->
envelope -> residual depth gain (TGC) and gain drift -> log compression over
the style's dynamic range, light speckle smoothing, gamma -> 8 bit.
"""

from __future__ import annotations

import cv2
import numpy as np

from pivh_live.phantom.scanconv import SectorGeometry
from pivh_live.phantom.styles import ScannerStyle

# Mean of 20*log10 of a Rayleigh envelope with unit mean power.
_RAYLEIGH_LOG_MEAN_DB = -2.51
_BONE = 4.5  # backscatter above which echoes attenuate what lies behind


class SpeckleField:
    """Complex Gaussian scatterers, x_t = r x_{t-1} + sqrt(1 - r^2) n_t."""

    def __init__(self, rng: np.random.Generator, shape: tuple[int, int], r: float) -> None:
        self._rng = rng
        self._r = float(r)
        self._x = self._noise(shape)

    def _noise(self, shape: tuple[int, int]) -> np.ndarray:
        return self._rng.standard_normal((*shape, 2), dtype=np.float32) * np.float32(np.sqrt(0.5))

    def next(self) -> np.ndarray:
        """Advance one frame and return the (beams, samples, 2) real/imag field."""
        r = np.float32(self._r)
        self._x = r * self._x + np.float32(np.sqrt(1.0 - self._r**2)) * self._noise(
            self._x.shape[:2]
        )
        return self._x


def _gauss_kernel(sigma: float) -> np.ndarray:
    sigma = max(float(sigma), 0.3)
    k = cv2.getGaussianKernel(2 * int(np.ceil(3 * sigma)) + 1, sigma, cv2.CV_32F)
    return k.ravel()


class ImageFormer:
    """Turns polar backscatter maps into 8-bit polar B-mode images for one style."""

    def __init__(self, style: ScannerStyle, geom: SectorGeometry) -> None:
        self.style = style
        self.geom = geom
        dr = geom.dr_mm
        r = geom.radius - geom.apex_mm  # depth below the skin
        self._sig_ax = style.psf_axial_mm / dr
        dphi = float(geom.phi[1] - geom.phi[0])
        # Lateral PSF in beam units at three depths; blended linearly between.
        self._band_r = np.array([10.0, 35.0, 80.0], dtype=np.float32)
        lat_mm = style.psf_lateral_mm + style.psf_lateral_growth * (self._band_r - 30.0) / 10.0
        lat_mm = np.maximum(lat_mm, 0.3)
        self._sig_lat = lat_mm / ((self._band_r + geom.apex_mm) * dphi)
        self._kax = _gauss_kernel(self._sig_ax)
        self._kl = [_gauss_kernel(s) for s in self._sig_lat]
        # Unit output power for unit input power under each kernel pair.
        self._norm = [1.0 / np.sqrt(np.sum(self._kax**2) * np.sum(k**2)) for k in self._kl]
        self._w = np.stack([np.interp(r, self._band_r, np.eye(3)[b]) for b in range(3)])
        ctrl = np.linspace(0.0, style.depth_mm, len(style.tgc_db))
        self._tgc = np.interp(r, ctrl, np.asarray(style.tgc_db)).astype(np.float32)[None, :]
        smooth_px = style.smooth_mm / dr
        self._smooth = (max(smooth_px, 0.1), max(style.smooth_mm / (35.0 * dphi), 0.1))
        lin = (style.tissue_level / 255.0) ** (1.0 / style.gamma)
        self._offset = lin * style.dynamic_range_db - _RAYLEIGH_LOG_MEAN_DB
        self._dr_mm = dr
        # Electronic noise power per sample, set from its displayed gray at full
        # depth (log-Rayleigh mean, as for tissue) and falling towards the skin.
        lin_noise = (style.noise_gray / 255.0) ** (1.0 / style.gamma)
        floor_db = (lin_noise - lin) * style.dynamic_range_db
        floor_db = floor_db - style.noise_rise_db * (1.0 - r / style.depth_mm)
        self._floor = (10.0 ** (floor_db / 10.0)).astype(np.float32)[None, :]

    def echo(self, backscatter: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(echo amplitude, transmission) per polar sample.

        Boundary echoes are added from the backscatter's gradient; bone
        attenuates everything behind it along the beam. ``transmission`` (0-1)
        is the fraction of the beam's amplitude that reaches each sample: what
        lies where it is low is in acoustic shadow and cannot be seen.
        """
        st = self.style
        a = backscatter.astype(np.float32, copy=True)
        edge = np.zeros_like(a)
        edge[:, 1:-1] = np.abs(a[:, 2:] - a[:, :-2]) * 0.5
        edge = cv2.GaussianBlur(edge, (0, 0), sigmaX=1.0, sigmaY=0.7)
        a += st.edge_gain * np.minimum(edge, 3.0)
        excess = np.maximum(a - _BONE, 0.0)
        shadow = np.exp(-st.shadow_k * self._dr_mm * np.cumsum(excess, axis=1))
        shadow = np.concatenate([np.ones_like(shadow[:, :1]), shadow[:, :-1]], axis=1)
        return np.power(np.maximum(a, 0.05), st.backscatter_exp) * shadow, shadow

    def form_echo(self, amp: np.ndarray, speckle: np.ndarray, gain_db: float) -> np.ndarray:
        """Echo amplitude from `echo` + speckle field -> uint8 polar image."""
        field = speckle * amp[..., None]
        power = np.zeros_like(amp)
        for b in range(3):
            blurred = cv2.sepFilter2D(
                field, -1, self._kax, self._kl[b], borderType=cv2.BORDER_REFLECT
            )
            p = (blurred[..., 0] ** 2 + blurred[..., 1] ** 2) * np.float32(self._norm[b] ** 2)
            power += p * self._w[b][None, :]
        power += self._noise(speckle)
        db = 10.0 * np.log10(power + 1e-9) + self._tgc + gain_db
        db = cv2.GaussianBlur(db, (0, 0), sigmaX=self._smooth[0], sigmaY=self._smooth[1])
        return self._compress(db)

    def _compress(self, db: np.ndarray) -> np.ndarray:
        st = self.style
        lin = np.clip((db + self._offset) / st.dynamic_range_db, 0.0, 1.0)
        return (255.0 * np.power(lin, st.gamma) + 0.5).astype(np.uint8)

    def blank(self, rng: np.random.Generator, speckle: np.ndarray, gain_db: float) -> np.ndarray:
        """Probe lifted: no brain, only reverberation near the face and faint noise."""
        depth = self.geom.radius - self.geom.apex_mm
        period = rng.uniform(1.2, 3.0)
        bands = (np.cos(2 * np.pi * depth / period) > 0.6) * np.exp(-depth / rng.uniform(2.0, 8.0))
        haze = rng.uniform(0.05, 0.6)  # gain left high on some scanners: a noisy empty sector
        a = np.broadcast_to(haze + 2.5 * bands[None, :], speckle.shape[:2]).astype(np.float32)
        field = speckle * a[..., None]
        blurred = cv2.sepFilter2D(field, -1, self._kax, self._kl[1], borderType=cv2.BORDER_REFLECT)
        power = (blurred[..., 0] ** 2 + blurred[..., 1] ** 2) * np.float32(self._norm[1] ** 2)
        power *= np.float32(10.0 ** (-rng.uniform(5.0, 25.0) / 10.0))
        power += self._noise(speckle)
        db = 10.0 * np.log10(power + 1e-9) + self._tgc + gain_db
        db = cv2.GaussianBlur(db, (0, 0), sigmaX=self._smooth[0], sigmaY=self._smooth[1])
        return self._compress(db)

    def _noise(self, speckle: np.ndarray) -> np.ndarray:
        """Noise floor power: the scatterer field shifted so it does not track the tissue."""
        nb, ns = speckle.shape[:2]
        z = np.roll(speckle, (nb // 3, ns // 2), axis=(0, 1))
        return self._floor * (z[..., 0] ** 2 + z[..., 1] ** 2)
