"""Finding the ultrasound image on a scanner screen, --roi parsing and cropping.

Fast tests use hand-built screens with an exact ROI; the phantom tests (marked
slow) use `pivh_live.phantom` screens whose true ROI is `Clip.roi`.
"""

from __future__ import annotations

import dataclasses
import functools
from itertools import pairwise

import cv2
import numpy as np
import pytest

from pivh_live.errors import ConfigError
from pivh_live.frames import Roi
from pivh_live.region import RegionDetector, crop_region, parse_roi, roi_iou

Box = tuple[int, int, int, int]


def fan_mask(h: int, w: int) -> np.ndarray:
    """A sector with its apex just above the top edge, touching all four sides."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ay = -0.05 * h
    r = np.hypot(xx - w / 2, yy - ay)
    angle = np.arctan2(xx - w / 2, yy - ay)
    half = np.arctan2(w / 2, (h - ay) * 0.75)
    return (r <= h - ay) & (np.abs(angle) <= half)


class Scanner:
    """A synthetic scanner screen: UI, fake identifiers, a live speckled sector."""

    def __init__(self, seed: int, width: int, height: int, roi: Roi, ui_level: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.roi = roi
        self.text_boxes: list[Box] = []
        ui = np.full((height, width, 3), ui_level, np.uint8)
        cv2.rectangle(ui, (0, 0), (width, 50), (60, 60, 60), -1)
        self._text(ui, "DOE^JANE  ID 12345678", (12, 34), 0.9)
        self._text(ui, "2025-01-01 12:00  C8-5  9.5cm", (width // 2, 34), 0.8)
        for i in range(8):
            self._text(ui, f"Gain {40 + i}", (12, 100 + 40 * i), 0.6)
        # Depth scale 8 px right of the image, gray bar beyond it: static chrome.
        xs = roi.x + roi.w + 8
        cv2.line(ui, (xs, roi.y), (xs, roi.y + roi.h - 1), (200, 200, 200), 1)
        for k, y in enumerate(range(roi.y, roi.y + roi.h, roi.h // 9)):
            cv2.line(ui, (xs, y), (xs + 10, y), (200, 200, 200), 1)
            self._text(ui, str(k), (xs + 14, y + 5), 0.45)
        bar = np.linspace(255, 0, roi.h // 3).astype(np.uint8)[:, None, None]
        ui[roi.y : roi.y + roi.h // 3, xs + 40 : xs + 52] = bar
        ui[roi.y : roi.y + roi.h, roi.x : roi.x + roi.w] = 0
        self.ui = ui
        self.fan = fan_mask(roi.h, roi.w)
        ys, xs = np.nonzero(self.fan)
        # On a black UI only the sector shows (it may not reach the panel's
        # sides); on a lighter UI the black panel around it is the image area.
        self.panel = roi
        self.truth = (
            roi
            if ui_level > 2
            else Roi(
                roi.x + int(xs.min()),
                roi.y + int(ys.min()),
                int(xs.max() - xs.min()) + 1,
                int(ys.max() - ys.min()) + 1,
            )
        )
        yy, xx = np.mgrid[0 : roi.h, 0 : roi.w]
        ventricle = ((xx - roi.w * 0.4) / (roi.w * 0.08)) ** 2 + (
            (yy - roi.h * 0.45) / (roi.h * 0.05)
        ) ** 2 < 1
        # Anechoic ventricle and a dim deep field: only a faint noise floor there.
        depth_gain = np.linspace(1.0, 0.15, roi.h)[:, None]
        self.amp = np.where(ventricle, 0.03, depth_gain) * self.fan
        self.z = self._noise()
        self.t = 0

    def _text(self, img: np.ndarray, txt: str, org: tuple[int, int], size: float) -> None:
        cv2.putText(img, txt, org, cv2.FONT_HERSHEY_SIMPLEX, size, (230, 230, 230), 2)
        (tw, th), base = cv2.getTextSize(txt, cv2.FONT_HERSHEY_SIMPLEX, size, 2)
        self.text_boxes.append((org[0], org[1] - th, tw, th + base))

    def _noise(self) -> np.ndarray:
        shape = (self.roi.h, self.roi.w)
        return self.rng.normal(size=shape) + 1j * self.rng.normal(size=shape)

    def frame(self, *, frozen: bool = False) -> np.ndarray:
        if not frozen:
            self.z = 0.9 * self.z + np.sqrt(1 - 0.81) * self._noise()
            self.t += 1
        speckle = cv2.GaussianBlur(np.abs(self.z).astype(np.float32), (0, 0), 1.2)
        image = np.clip(80 * speckle / 0.55 * self.amp, 0, 255).astype(np.uint8)
        out = self.ui.copy()
        r = self.roi
        view = out[r.y : r.y + r.h, r.x : r.x + r.w]
        view[self.fan] = image[self.fan][:, None]
        cv2.putText(out, f"Frame {self.t:04d}", (out.shape[1] - 160, 30), 0, 0.5, (200,) * 3, 1)
        return out


def overlaps(box: Box, roi: Roi) -> bool:
    x, y, w, h = box
    return not (x + w <= roi.x or x >= roi.x + roi.w or y + h <= roi.y or y >= roi.y + roi.h)


def edge_error(a: Roi, b: Roi) -> int:
    return max(
        abs(a.x - b.x), abs(a.y - b.y), abs(a.x + a.w - b.x - b.w), abs(a.y + a.h - b.y - b.h)
    )


def run(detector: RegionDetector, scanner: Scanner, n: int) -> Roi | None:
    roi = None
    for _ in range(n):
        roi = detector.update(scanner.frame())
    return roi


@pytest.mark.parametrize(
    ("seed", "width", "height", "roi", "ui_level"),
    [
        (1, 1920, 1080, Roi(460, 110, 1000, 820), 0),
        (2, 1920, 1080, Roi(250, 70, 1300, 900), 0),
        (2, 1920, 1080, Roi(250, 70, 1300, 900), 14),
        (3, 1280, 720, Roi(300, 80, 660, 560), 0),
        (4, 1280, 720, Roi(180, 60, 860, 600), 0),
        (4, 1280, 720, Roi(180, 60, 860, 600), 30),
    ],
)
def test_finds_the_image_and_leaves_text_outside(
    seed: int, width: int, height: int, roi: Roi, ui_level: int
) -> None:
    scanner = Scanner(seed, width, height, roi, ui_level)
    found = run(RegionDetector(), scanner, 12)
    assert found is not None
    truth = scanner.truth
    assert roi_iou(found, truth) >= 0.95 and edge_error(found, truth) <= 6, (found, truth)
    assert not [b for b in scanner.text_boxes if overlaps(b, found)]


def test_bgr_and_gray_give_the_same_roi() -> None:
    a, b = (Scanner(5, 1280, 720, Roi(300, 80, 660, 560)) for _ in range(2))
    det_bgr, det_gray = RegionDetector(), RegionDetector()
    for _ in range(8):
        out_bgr = det_bgr.update(a.frame())
        out_gray = det_gray.update(cv2.cvtColor(b.frame(), cv2.COLOR_BGR2GRAY))
    assert out_bgr == out_gray and out_bgr is not None


def test_follows_a_resolution_switch() -> None:
    big = Scanner(6, 1920, 1080, Roi(460, 110, 1000, 820))
    small = Scanner(7, 1280, 720, Roi(300, 80, 660, 560))
    detector = RegionDetector()
    assert run(detector, big, 10) is not None
    # A stale 1080p ROI must never be applied to a 720p frame.
    assert detector.update(small.frame()) is None
    found = run(detector, small, 10)
    assert found is not None and edge_error(found, small.truth) <= 6


def test_output_holds_while_the_image_flickers() -> None:
    scanner = Scanner(8, 1280, 720, Roi(300, 80, 660, 560))
    detector = RegionDetector()
    first = run(detector, scanner, 8)
    assert first is not None
    rng = np.random.default_rng(0)
    amp = scanner.amp.copy()
    outputs = []
    for _ in range(20):
        # Gain swings, and the dim edges of the sector come and go by up to 10 px.
        scanner.amp = amp * rng.uniform(0.3, 1.5)
        left, right, bottom = rng.integers(0, 11, 3)
        scanner.amp[:, :left] = 0
        scanner.amp[:, amp.shape[1] - right :] = 0
        scanner.amp[amp.shape[0] - bottom :] = 0
        outputs.append(detector.update(scanner.frame()))
    assert all(out == first for out in outputs)


def test_follows_a_lasting_move_after_a_few_frames() -> None:
    detector = RegionDetector(hold_frames=5, confirm_frames=4)
    first = run(detector, Scanner(11, 1280, 720, Roi(300, 80, 660, 560)), 8)
    moved = Scanner(11, 1280, 720, Roi(340, 80, 660, 560))
    outputs = [detector.update(moved.frame()) for _ in range(40)]
    assert outputs[:3] == [first] * 3  # one frame is no reason to move
    assert outputs[-1] is not None and edge_error(outputs[-1], moved.truth) <= 6
    changes = sum(1 for a, b in pairwise(outputs) if a != b)
    assert 1 <= changes <= 3


def test_frozen_screen_falls_back_to_texture() -> None:
    roi = Roi(460, 110, 1000, 820)
    scanner = Scanner(9, 1920, 1080, roi)
    frame = scanner.frame()
    detector = RegionDetector()
    found = None
    for _ in range(6):
        found = detector.update(frame.copy())
    assert found is not None
    assert roi_iou(found, scanner.truth) >= 0.9, (found, scanner.truth)
    assert not [b for b in scanner.text_boxes[:2] if overlaps(b, found)]  # name and ID


def test_screen_without_image_gives_none() -> None:
    scanner = Scanner(10, 1280, 720, Roi(300, 80, 660, 560))
    scanner.amp[:] = 0  # probe not connected: black image area
    assert run(RegionDetector(), scanner, 10) is None


# ---- --roi and cropping ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "roi"),
    [("320,140,1280,860", Roi(320, 140, 1280, 860)), (" 0, 0, 64 ,48", Roi(0, 0, 64, 48))],
)
def test_parse_roi(text: str, roi: Roi) -> None:
    assert parse_roi(text) == roi


@pytest.mark.parametrize("text", ["", "1,2,3", "1,2,3,4,5", "a,b,c,d", "0,0,0,10", "-1,0,5,5"])
def test_parse_roi_rejects(text: str) -> None:
    with pytest.raises(ConfigError, match="ROI"):
        parse_roi(text)


def test_crop_is_a_contiguous_copy_without_the_rest_of_the_frame() -> None:
    frame = np.arange(100 * 80 * 3, dtype=np.uint32).reshape(100, 80, 3).astype(np.uint8)
    crop = crop_region(frame, Roi(10, 20, 30, 40))
    assert crop.shape == (40, 30, 3) and crop.flags["C_CONTIGUOUS"]
    assert crop.base is None or crop.base is not frame  # owns its pixels
    assert not np.shares_memory(crop, frame)
    np.testing.assert_array_equal(crop, frame[20:60, 10:40])


def test_crop_clips_to_the_frame_and_rejects_outside() -> None:
    frame = np.zeros((100, 80), np.uint8)
    assert crop_region(frame, Roi(60, 90, 50, 50)).shape == (10, 20)
    with pytest.raises(ConfigError, match="outside the 80x100 frame"):
        crop_region(frame, Roi(200, 0, 10, 10))


# ---- phantom screens (slow: each case builds a 3D head model) ------------------


@dataclasses.dataclass(frozen=True)
class PhantomScreen:
    seed: int
    frames: tuple[np.ndarray, ...]
    roi: Roi
    text_boxes: tuple[Box, ...]

    @property
    def ui_level(self) -> float:
        outside = np.ones(self.frames[0].shape, bool)
        outside[self.roi.y : self.roi.y + self.roi.h, self.roi.x : self.roi.x + self.roi.w] = False
        return float(np.median(self.frames[0][outside]))


@functools.lru_cache(maxsize=8)
def phantom_screen(seed: int, n_frames: int = 10) -> PhantomScreen:
    phantom = pytest.importorskip("pivh_live.phantom")
    spec = phantom.sample_case(np.random.default_rng(seed), n_frames=n_frames, screen=True)
    renderer = phantom.ClipRenderer(spec)
    frames = tuple(f.image for f in renderer.frames())
    return PhantomScreen(seed, frames, renderer.roi, tuple(renderer.screen.text_boxes))


def first_screens(width: int, count: int, *, panel: bool) -> list[PhantomScreen]:
    """The first ``count`` phantom screens of ``width`` whose UI background is
    (``panel``) or is not black, from seed 0 on."""
    phantom = pytest.importorskip("pivh_live.phantom")
    found = []
    for seed in range(40):
        style = phantom.sample_case(np.random.default_rng(seed), screen=True).style
        if style.screen is None or style.screen.width != width:
            continue
        screen = phantom_screen(seed)
        if (screen.ui_level > 2) == panel:
            found.append(screen)
        if len(found) == count:
            return found
    raise AssertionError(f"fewer than {count} {width}-wide phantom screens in seeds 0-39")


def detect(screen: PhantomScreen, detector: RegionDetector | None = None) -> Roi | None:
    detector = detector or RegionDetector()
    roi = None
    for frame in screen.frames:
        roi = detector.update(frame)
    return roi


@pytest.mark.slow
@pytest.mark.parametrize("width", [1920, 1280])
def test_phantom_screen_roi_found(width: int) -> None:
    for screen in first_screens(width, 2, panel=True):
        found = detect(screen)
        assert found is not None, screen.seed
        assert roi_iou(found, screen.roi) >= 0.9, (screen.seed, found, screen.roi)
        assert edge_error(found, screen.roi) <= 4, (screen.seed, found, screen.roi)
        assert not [b for b in screen.text_boxes if overlaps(b, found)]


@pytest.mark.slow
def test_phantom_on_black_ui_stays_inside_and_keeps_text_out() -> None:
    # Without a visible panel only the sector's content shows; the detected
    # box must then hold that content and nothing of the UI.
    screen = first_screens(1280, 1, panel=False)[0]
    found = detect(screen)
    assert found is not None
    r = screen.roi
    assert r.x - 4 <= found.x and found.x + found.w <= r.x + r.w + 4
    assert r.y - 4 <= found.y and found.y + found.h <= r.y + r.h + 4
    assert not [b for b in screen.text_boxes if overlaps(b, found)]
    content = np.zeros(screen.frames[0].shape, bool)
    for a, b in zip(screen.frames, screen.frames[1:], strict=False):
        content |= a != b
    content[: r.y] = content[r.y + r.h :] = False  # the frame counter in the top bar
    ys, xs = np.nonzero(content)
    inside = (xs >= found.x) & (xs < found.x + found.w) & (ys >= found.y) & (ys < found.y + found.h)
    assert inside.mean() >= 0.99


@pytest.mark.slow
def test_phantom_resolution_switch_is_followed() -> None:
    big = first_screens(1920, 1, panel=True)[0]
    small = first_screens(1280, 1, panel=True)[0]
    detector = RegionDetector()
    assert detect(big, detector) is not None
    assert detector.update(small.frames[0]) is None
    found = detect(small, detector)
    assert found is not None and roi_iou(found, small.roi) >= 0.9
