"""Live overlay on the ultrasound region: alert banner, grade, P(PIVH) bar, lesion contour.

Draws on a copy: the captured frame is what gets recorded. The banner never
says "normal" unless the smoother is scoring a valid image. Text is drawn
once into cached sprites (cv2.putText is slow for big text) and blitted, and
nothing touches every pixel except the one copy of the input, so a 1080p
frame renders in well under 2 ms.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from pivh_live import DISCLAIMER
from pivh_live.errors import ConfigError
from pivh_live.frames import GRADE_NAMES, Score
from pivh_live.preprocess import heatmap_to_region

if TYPE_CHECKING:
    from pivh_live.smoothing import LiveState, SmoothingConfig

logger = logging.getLogger(__name__)

Colour = tuple[int, int, int]  # BGR
WHITE: Colour = (255, 255, 255)
BLACK: Colour = (0, 0, 0)
# Banner background and text colour per display state.
BANNER_STYLES: dict[str, tuple[Colour, Colour]] = {
    "alert": ((0, 0, 200), WHITE),
    "normal": ((0, 130, 0), WHITE),
    "no_valid_image": ((110, 110, 110), WHITE),
    "frozen": ((0, 170, 255), BLACK),
    "no_signal": ((32, 32, 32), WHITE),
    "starting": ((170, 90, 0), WHITE),
    "restarting": ((170, 90, 0), WHITE),
}
DISPLAY_STATUSES: tuple[str, ...] = ("no_signal", "restarting", "starting")
CONTOUR_COLOUR: Colour = (0, 255, 255)
_PANEL: Colour = (24, 24, 24)
_FONT = cv2.FONT_HERSHEY_DUPLEX
_HEATMAP_GRID = 256  # long side of the grid the contour is traced on
_MAX_SPRITES = 512
_MAX_BANNERS = 32


@dataclass(frozen=True)
class OverlaySettings:
    """``pivh_threshold`` places the tick on the P(PIVH) bar (the smoother's operating
    threshold); ``heatmap_level`` is the iso-level of the lesion contour."""

    pivh_threshold: float = 0.5
    heatmap_level: float = 0.5
    show_heatmap: bool = True
    fit: str = "letterbox"  # the model's input fit, to map its heatmap onto the region

    def __post_init__(self) -> None:
        for name in ("pivh_threshold", "heatmap_level"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0.0 < value < 1.0):
                raise ConfigError(f"overlay {name}={value!r} must be a number in (0, 1)")

    @classmethod
    def from_smoothing(cls, config: SmoothingConfig, **overrides: Any) -> OverlaySettings:
        return cls(pivh_threshold=config.pivh_threshold, **overrides)


@dataclass(frozen=True)
class DrawItem:
    """One thing drawn, with its bounding box in output pixels (may be clipped)."""

    name: str
    text: str
    x: int
    y: int
    w: int
    h: int
    colour: Colour


def banner(state: LiveState | None, display_status: str | None = None) -> tuple[str, str]:
    """(style key, text) of the banner; a green "normal" only for a valid, scored image."""
    if display_status is not None and display_status not in DISPLAY_STATUSES:
        raise ValueError(
            f"display_status must be one of {DISPLAY_STATUSES}, got {display_status!r}"
        )
    if display_status == "no_signal":
        return "no_signal", "NO SIGNAL"
    if display_status == "restarting":
        return "restarting", "RESTARTING"
    if display_status == "starting" or state is None or state.status == "starting":
        return "starting", "STARTING"
    if state.status == "frozen":
        return "frozen", "FROZEN IMAGE"
    if state.status == "scoring" and state.alert:
        grade = state.grade
        suffix = f" - grade {GRADE_NAMES[grade]}" if grade else ""
        return "alert", "PIVH ALERT" + suffix
    if state.status == "scoring" and state.valid:
        return "normal", "No PIVH detected"
    return "no_valid_image", "NO VALID IMAGE"


def format_status_line(
    fps: float | None, latency_ms: float | None, engine: str, model_version: str
) -> str:
    """The standard status line: "29.9 fps | 41 ms | onnxruntime | model 1.2.0"."""
    fps_text = f"{fps:.1f} fps" if fps is not None else "-- fps"
    lat_text = f"{latency_ms:.0f} ms" if latency_ms is not None else "-- ms"
    return f"{fps_text} | {lat_text} | {engine} | model {model_version}"


class _Lru(OrderedDict):
    """Bounded cache: the status line changes every frame, so sprites must be evicted."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def put(self, key: Any, value: Any) -> Any:
        self[key] = value
        if len(self) > self.size:
            self.popitem(last=False)
        return value

    def hit(self, key: Any) -> Any:
        value = self.get(key)
        if value is not None:
            self.move_to_end(key)
        return value


_Plan = list[tuple[DrawItem, Any]]
# Payload of a plan entry: an ndarray sprite is blitted, a _Stroke is drawn,
# _FILL fills the item's box, None only reports (e.g. the grade, which is part
# of the banner sprite).
_FILL = "fill"


@dataclass(frozen=True)
class _Stroke:
    contours: list[np.ndarray]
    thickness: int


class OverlayRenderer:
    """``render(image, state, score, status_line)`` -> annotated BGR copy of ``image``."""

    def __init__(self, settings: OverlaySettings | None = None) -> None:
        self.settings = settings or OverlaySettings()
        self._sprites = _Lru(_MAX_SPRITES)
        self._banners = _Lru(_MAX_BANNERS)
        self._warned_heatmap = False

    def layout(
        self,
        shape: Sequence[int],
        state: LiveState | None,
        score: Score | None = None,
        status_line: str | None = None,
        display_status: str | None = None,
    ) -> tuple[DrawItem, ...]:
        """What ``render`` draws for an image of ``shape``, without drawing it."""
        return tuple(
            item for item, _ in self._plan(shape, state, score, status_line, display_status)
        )

    def render(
        self,
        image: np.ndarray,
        state: LiveState | None,
        score: Score | None = None,
        status_line: str | None = None,
        display_status: str | None = None,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """Annotated BGR uint8 copy of a gray (H, W[, 1]) or BGR(A) uint8 ``image``.

        ``out`` (H, W, 3) uint8 is filled and returned when given; it must not
        overlap ``image``, which is never modified.
        """
        canvas = _bgr_copy(image, out)
        for item, payload in self._plan(image.shape, state, score, status_line, display_status):
            if isinstance(payload, np.ndarray):
                _blit(canvas, payload, item.x, item.y)
            elif isinstance(payload, _Stroke):
                cv2.polylines(
                    canvas, payload.contours, True, item.colour, payload.thickness, cv2.LINE_AA
                )
            elif payload is _FILL:
                _fill(canvas, item)
        return canvas

    # --- layout ---------------------------------------------------------------------

    def _plan(
        self,
        shape: Sequence[int],
        state: LiveState | None,
        score: Score | None,
        status_line: str | None,
        display_status: str | None,
    ) -> _Plan:
        h, w = int(shape[0]), int(shape[1])
        s = max(0.3, min(h / 1080, w / 1440))
        pad = max(2, round(12 * s))
        key, text = banner(state, display_status)
        scoring = display_status is None and state is not None and state.status == "scoring"
        plan: _Plan = []
        grade = state.grade if scoring and state is not None else None
        banner_h = self._add_banner(plan, w, h, s, pad, key, text, grade)
        y = banner_h + pad
        if scoring and state is not None:
            y = self._add_bar(plan, state, w, s, pad, y)
            # The contour marks what the alert is about; a one-frame spike under a
            # "No PIVH detected" banner would only confuse.
            if score is not None and state.alert:
                self._add_heatmap(plan, score, h, w, s)
        if state is not None:
            worst = f"Sweep worst grade: {GRADE_NAMES[state.worst_grade]}"
            self._add_text(plan, "worst", worst, pad, y, round(24 * s), WHITE, w - 2 * pad)
        self._add_footer(plan, w, h, s, pad, status_line)
        return plan

    def _add_banner(
        self,
        plan: _Plan,
        w: int,
        h: int,
        s: float,
        pad: int,
        key: str,
        text: str,
        grade: int | None,
    ) -> int:
        bg, fg = BANNER_STYLES[key]
        banner_h = min(max(24, round(110 * s)), max(1, h // 4))
        grade_text = f"Grade {GRADE_NAMES[grade]}" if grade is not None else ""
        cache_key = (w, banner_h, key, text, grade_text)
        cached = self._banners.hit(cache_key)
        if cached is None:
            sprite = np.empty((banner_h, w, 3), np.uint8)
            sprite[:] = bg
            right = w - pad
            grade_item = None
            if grade_text:
                big = self._sprite(grade_text, round(0.62 * banner_h), fg, bg, w // 2)
                right -= big.shape[1]
                grade_item = _item(
                    "grade", grade_text, right, (banner_h - big.shape[0]) // 2, big, fg
                )
                _blit(sprite, big, grade_item.x, grade_item.y)
            label = self._sprite(text, round(0.36 * banner_h), fg, bg, max(1, right - 2 * pad))
            _blit(sprite, label, pad, (banner_h - label.shape[0]) // 2)
            cached = self._banners.put(cache_key, (sprite, grade_item))
        sprite, grade_item = cached
        plan.append((DrawItem("banner", text, 0, 0, w, banner_h, bg), sprite))
        if grade_item is not None:
            plan.append((grade_item, None))
        return banner_h

    def _add_bar(self, plan: _Plan, state: LiveState, w: int, s: float, pad: int, y: int) -> int:
        p = min(1.0, max(0.0, float(state.p_pivh))) if math.isfinite(state.p_pivh) else 0.0
        label = f"P(PIVH) {p:.2f}"
        text_h = round(24 * s)
        item = self._add_text(plan, "bar_label", label, pad, y, text_h, WHITE, w - 2 * pad)
        bar_x = item.x + item.w + pad
        bar_w = max(0, min(round(0.3 * w), w - pad - bar_x))
        bar_h = item.h
        back = self._sprites.hit(("bar", bar_w, bar_h))
        if back is None:
            back = np.full((bar_h, bar_w, 3), 60, np.uint8)
            cv2.rectangle(back, (0, 0), (bar_w - 1, bar_h - 1), (200, 200, 200), 1)
            self._sprites.put(("bar", bar_w, bar_h), back)
        plan.append((DrawItem("bar", "", bar_x, y, bar_w, bar_h, (60, 60, 60)), back))
        colour = BANNER_STYLES["alert"][0] if state.alert else (200, 200, 200)
        fill_w = round(p * max(0, bar_w - 2))
        plan.append((DrawItem("bar_fill", "", bar_x + 1, y + 1, fill_w, bar_h - 2, colour), _FILL))
        tick_w = max(2, round(3 * s))
        tick_x = bar_x + round(self.settings.pivh_threshold * bar_w) - tick_w // 2
        tick = DrawItem("threshold", "", tick_x, y - pad // 2, tick_w, bar_h + pad, WHITE)
        plan.append((tick, _FILL))
        return y + bar_h + pad

    def _add_heatmap(self, plan: _Plan, score: Score, h: int, w: int, s: float) -> None:
        if not self.settings.show_heatmap:
            return
        hm = np.asarray(score.heatmap, dtype=np.float32)
        if hm.size == 0 or not np.isfinite(hm).all():
            if not self._warned_heatmap:
                logger.warning("heatmap is empty or not finite; no lesion contour drawn")
                self._warned_heatmap = True
            return
        # Trace the contour on a small grid and scale the points: a full-frame
        # float map would cost more than the whole rest of the overlay.
        k = max(1, math.ceil(max(h, w) / _HEATMAP_GRID))
        hs, ws = math.ceil(h / k), math.ceil(w / k)
        small = heatmap_to_region(hm, (hs, ws), self.settings.fit)
        mask = (small >= self.settings.heatmap_level).astype(np.uint8)
        if not mask.any():
            return
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        scale = np.array([w / ws, h / hs], np.float32)
        points = [
            np.round((c.astype(np.float32) + 0.5) * scale - 0.5).astype(np.int32) for c in contours
        ]
        x, y, bw, bh = cv2.boundingRect(np.concatenate(points))
        stroke = _Stroke(points, max(2, round(3 * s)))
        plan.append((DrawItem("heatmap", "", x, y, bw, bh, CONTOUR_COLOUR), stroke))

    def _add_footer(
        self, plan: _Plan, w: int, h: int, s: float, pad: int, status_line: str | None
    ) -> None:
        text_h = round(22 * s)
        disclaimer = self._sprite(DISCLAIMER, text_h, (0, 215, 255), _PANEL, w - 2 * pad)
        dh, dw = disclaimer.shape[:2]
        y = h - pad - dh
        if status_line:
            status = self._sprite(status_line, text_h, WHITE, _PANEL, w - 2 * pad)
            plan.append((_item("status", status_line, pad, y, status, WHITE), status))
            if status.shape[1] + dw + 3 * pad > w:  # no room side by side: stack them
                y -= dh + pad // 2
        plan.append(
            (_item("disclaimer", DISCLAIMER, w - pad - dw, y, disclaimer, WHITE), disclaimer)
        )

    def _add_text(
        self, plan: _Plan, name: str, text: str, x: int, y: int, text_h: int, fg: Colour, max_w: int
    ) -> DrawItem:
        sprite = self._sprite(text, text_h, fg, _PANEL, max_w)
        item = _item(name, text, x, y, sprite, fg)
        plan.append((item, sprite))
        return item

    def _sprite(self, text: str, text_h: int, fg: Colour, bg: Colour, max_w: int) -> np.ndarray:
        """Text on a solid box, cap height ``text_h`` px, shrunk to fit ``max_w``; cached."""
        key = (text, text_h, fg, bg, max_w)
        sprite = self._sprites.hit(key)
        if sprite is not None:
            return sprite
        cap_h = max(4, text_h)
        scale = cap_h / cv2.getTextSize("H", _FONT, 1.0, 1)[0][1]
        thickness = max(1, round(scale * 1.6))
        (tw, th), base = cv2.getTextSize(text, _FONT, scale, thickness)
        if tw > max_w - 8 and tw > 0:
            scale *= max(0.05, (max_w - 8) / tw)
            thickness = max(1, round(scale * 1.6))
            (tw, th), base = cv2.getTextSize(text, _FONT, scale, thickness)
        margin = max(2, th // 4)
        sprite = np.empty((th + base + 2 * margin, tw + 2 * margin, 3), np.uint8)
        sprite[:] = bg
        cv2.putText(sprite, text, (margin, margin + th), _FONT, scale, fg, thickness, cv2.LINE_AA)
        return self._sprites.put(key, sprite)


def _item(name: str, text: str, x: int, y: int, sprite: np.ndarray, colour: Colour) -> DrawItem:
    return DrawItem(name, text, x, y, sprite.shape[1], sprite.shape[0], colour)


def _bgr_copy(image: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise ValueError("overlay needs a uint8 numpy image")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    h, w = image.shape[:2]
    if out is None:
        out = np.empty((h, w, 3), np.uint8)
    elif out.shape != (h, w, 3) or out.dtype != np.uint8 or not out.flags.c_contiguous:
        raise ValueError(f"out must be a contiguous uint8 array of shape {(h, w, 3)}")
    elif np.shares_memory(out, image):
        raise ValueError("out overlaps the input image; the captured frame must stay untouched")
    if image.ndim == 2:
        cv2.cvtColor(image, cv2.COLOR_GRAY2BGR, dst=out)
    elif image.ndim == 3 and image.shape[2] == 3:
        np.copyto(out, image)
    elif image.ndim == 3 and image.shape[2] == 4:
        cv2.cvtColor(image, cv2.COLOR_BGRA2BGR, dst=out)
    else:
        raise ValueError(
            f"overlay needs (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {image.shape}"
        )
    return out


def _blit(canvas: np.ndarray, sprite: np.ndarray, x: int, y: int) -> None:
    """Copy ``sprite`` to (x, y), clipped to the canvas."""
    h, w = canvas.shape[:2]
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(w, x + sprite.shape[1]), min(h, y + sprite.shape[0])
    if x1 > x0 and y1 > y0:
        canvas[y0:y1, x0:x1] = sprite[y0 - y : y1 - y, x0 - x : x1 - x]


def _fill(canvas: np.ndarray, item: DrawItem) -> None:
    h, w = canvas.shape[:2]
    x0, y0 = max(0, item.x), max(0, item.y)
    x1, y1 = min(w, item.x + item.w), min(h, item.y + item.h)
    if x1 > x0 and y1 > y0:
        canvas[y0:y1, x0:x1] = item.colour
