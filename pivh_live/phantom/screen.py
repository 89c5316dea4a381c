"""Full scanner screen around the image region, as an HDMI capture shows it.

UI chrome (title bar, menu panel, settings text, depth scale with ticks,
gray bar, thumbnails) and burned-in FAKE identifiers (random made-up name,
ID, dates) are drawn once per clip with cv2; each frame only pastes the
region and updates a frame counter. Everything drawn lies outside the
region's rectangle, which is recorded as the ROI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

from pivh_live.frames import Roi
from pivh_live.phantom.scanconv import SectorGeometry
from pivh_live.phantom.styles import ScreenLayout

if TYPE_CHECKING:
    from pivh_live.phantom.clip import CaseSpec

_SYLLABLES = ("ka", "lo", "mi", "ra", "ven", "to", "su", "bel", "dor", "in", "sa", "ny", "qu", "ze")
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_MENU = ("2D", "Gain", "Depth", "Focus", "DR", "Freq", "Pers", "Zoom", "Freeze", "Store", "Measure")


def fake_identity(rng: np.random.Generator) -> dict[str, str]:
    """Made-up patient identifiers: never real data."""

    def word(n: int) -> str:
        return "".join(rng.choice(_SYLLABLES, n)).upper()

    y, m, d = int(rng.integers(2019, 2026)), int(rng.integers(1, 13)), int(rng.integers(1, 29))
    return {
        "name": f"{word(int(rng.integers(2, 4)))}^{word(2)}",
        "id": f"ID {int(rng.integers(10**7, 10**8))}",
        "date": f"{y:04d}-{m:02d}-{d:02d} {rng.integers(0, 24):02d}:{rng.integers(0, 60):02d}",
        "dob": f"DOB {y:04d}-{m:02d}-{max(d - int(rng.integers(1, 20)), 1):02d}",
        "inst": f"{word(2)} NICU",
    }


class Screen:
    def __init__(self, layout: ScreenLayout, geom: SectorGeometry, spec: CaseSpec) -> None:
        rng = np.random.default_rng(layout.ui_seed)
        self.layout = layout
        W, H = layout.width, layout.height
        s = H / 1080.0
        self._scale = s
        top = int(rng.uniform(50, 80) * s)
        panel = int(rng.uniform(150, 240) * s) if layout.theme != 2 else 0
        left_panel = layout.theme == 0
        area_x0 = panel if left_panel else 0
        area_x1 = W - (panel if not left_panel else int(90 * s))
        area_y0, area_y1 = top + int(10 * s), H - int(rng.uniform(40, 110) * s)
        w, h = geom.width, geom.height
        x = area_x0 + max((area_x1 - area_x0 - w) // 2, 0) + int(rng.integers(-20, 21) * s)
        y = area_y0 + max((area_y1 - area_y0 - h) // 2, 0) + int(rng.integers(-10, 11) * s)
        x = int(np.clip(x, 0, W - w - int(60 * s)))
        y = int(np.clip(y, top + 2, H - h))
        self.roi = Roi(x, y, w, h)
        bg = np.full((H, W), int(rng.integers(0, 25)), dtype=np.uint8)
        ident = fake_identity(rng)
        self.text_boxes: list[tuple[int, int, int, int]] = []
        self._draw_top(bg, rng, ident, top, spec)
        if panel:
            px0 = 0 if left_panel else W - panel
            self._draw_panel(bg, rng, px0, top, panel, H, spec)
        self._draw_depth_scale(bg, geom, rng)
        self._draw_graybar(bg, rng)
        bg[y : y + h, x : x + w] = 0
        self.background = bg
        self._counter_at = (int(W - 150 * s), int(top * 0.45))

    def _text(self, img: np.ndarray, txt: str, org: tuple[int, int], size: float, val: int) -> None:
        fs = size * self._scale
        th = max(round(1.6 * self._scale), 1)
        cv2.putText(img, txt, org, _FONT, fs, int(val), th, cv2.LINE_AA)
        (tw, tht), base = cv2.getTextSize(txt, _FONT, fs, th)
        self.text_boxes.append((org[0], org[1] - tht, tw, tht + base))

    def _draw_top(
        self, bg: np.ndarray, rng: np.random.Generator, ident: dict, top: int, spec: CaseSpec
    ) -> None:
        W = bg.shape[1]
        cv2.rectangle(bg, (0, 0), (W - 1, top), int(rng.integers(35, 70)), -1)
        fg = int(rng.integers(190, 256))
        y1, y2 = int(top * 0.45), int(top * 0.88)
        self._text(bg, ident["name"], (int(12 * self._scale), y1), 0.75, fg)
        self._text(bg, f"{ident['id']}   {ident['dob']}", (int(12 * self._scale), y2), 0.6, fg)
        self._text(bg, ident["inst"], (int(W * 0.42), y1), 0.65, fg)
        self._text(bg, ident["date"], (int(W * 0.72), y1), 0.65, fg)
        st = spec.style
        self._text(bg, f"C8-5  {st.depth_mm / 10:.1f}cm  Neo Head", (int(W * 0.42), y2), 0.55, fg)
        self._text(bg, f"MI 0.{int(rng.integers(2, 9))}  TIs 0.{int(rng.integers(1, 5))}",
                   (int(W * 0.72), y2), 0.55, fg)  # fmt: skip

    def _draw_panel(
        self, bg: np.ndarray, rng: np.random.Generator, x0: int, top: int, width: int, H: int,
        spec: CaseSpec,
    ) -> None:  # fmt: skip
        cv2.rectangle(bg, (x0, top), (x0 + width - 1, H - 1), int(rng.integers(25, 55)), -1)
        st = spec.style
        vals = {
            "Gain": f"{int(rng.integers(40, 70))}", "Depth": f"{st.depth_mm / 10:.1f}",
            "DR": f"{int(st.dynamic_range_db)}", "Freq": f"{rng.uniform(6, 10):.1f}M",
            "Pers": f"{int(rng.integers(0, 5))}",
        }  # fmt: skip
        step = int(42 * self._scale)
        for i, item in enumerate(_MENU):
            y = top + int(20 * self._scale) + i * step
            if y + step > H:
                break
            cv2.rectangle(
                bg, (x0 + 6, y), (x0 + width - 8, y + step - 8), int(rng.integers(55, 95)), -1
            )
            label = f"{item} {vals.get(item, '')}".strip()
            org = (x0 + 14, y + int(24 * self._scale))
            self._text(bg, label, org, 0.55, int(rng.integers(180, 250)))

    def _draw_depth_scale(
        self, bg: np.ndarray, geom: SectorGeometry, rng: np.random.Generator
    ) -> None:
        r = self.roi
        xs = r.x + r.w + int(8 * self._scale)
        top_mm = geom.radius[0] * float(np.cos(geom.phi[0]))
        val = int(rng.integers(150, 240))
        cv2.line(bg, (xs, r.y), (xs, r.y + r.h - 1), val, 1)
        depth_mm = geom.radius[-1] - geom.apex_mm
        for cm in range(int(depth_mm // 10) + 1):
            y = r.y + round((geom.apex_mm + cm * 10 - top_mm) / geom.px_mm)
            if y >= r.y + r.h:
                break
            big = cm % 5 == 0
            cv2.line(bg, (xs, y), (xs + int((12 if big else 6) * self._scale), y), val, 1)
            if cm and (big or rng.random() < 0.3):
                self._text(
                    bg, str(cm), (xs + int(14 * self._scale), y + int(5 * self._scale)), 0.45, val
                )

    def _draw_graybar(self, bg: np.ndarray, rng: np.random.Generator) -> None:
        r = self.roi
        x = r.x + r.w + int(40 * self._scale)
        bar_h = int(r.h * 0.35)
        if x + int(12 * self._scale) >= bg.shape[1]:
            return
        ramp = np.linspace(255, 0, bar_h).astype(np.uint8)[:, None]
        bg[r.y : r.y + bar_h, x : x + int(12 * self._scale)] = ramp

    def compose(self, region: np.ndarray, t: int) -> np.ndarray:
        frame = self.background.copy()
        r = self.roi
        frame[r.y : r.y + r.h, r.x : r.x + r.w] = region
        cv2.putText(
            frame, f"Frame {t:04d}", self._counter_at, _FONT, 0.5 * self._scale, 200, 1, cv2.LINE_AA
        )
        return frame
