"""Live overlay: banner per state, never "normal" without a valid image, copy-only drawing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pivh_live import DISCLAIMER
from pivh_live.errors import ConfigError
from pivh_live.frames import Score
from pivh_live.overlay import (
    DISPLAY_STATUSES,
    DrawItem,
    OverlayRenderer,
    OverlaySettings,
    banner,
    format_status_line,
)
from pivh_live.preprocess import heatmap_to_region
from pivh_live.smoothing import STATUSES, LiveState, SmoothingConfig


def _state(
    status: str = "scoring",
    alert: bool = False,
    grade: int | None = 0,
    valid: bool = True,
    p_pivh: float = 0.1,
    worst: int = 0,
) -> LiveState:
    return LiveState(
        t_ns=10,
        seq=3,
        status=status,
        alert=alert,
        grade=grade,
        p_pivh=p_pivh,
        p_severe=0.0,
        grade_probs=(1 - p_pivh, p_pivh, 0.0, 0.0, 0.0),
        valid=valid,
        alert_since_ns=None,
        worst_grade=worst,
        worst_grade_t_ns=None,
        best_evidence=None,
        n_alert_onsets=0,
    )


def _score(heatmap: np.ndarray | None = None) -> Score:
    hm = np.zeros((32, 32), np.float32) if heatmap is None else heatmap
    return Score(np.array([0.2, 0.1, 0.1, 0.5, 0.1], np.float32), 0.9, hm)


def _hot_heatmap(rows: slice, cols: slice) -> np.ndarray:
    hm = np.zeros((32, 32), np.float32)
    hm[rows, cols] = 0.9
    return hm


def _phantomish(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    # Speckle-like gray texture, values kept below the UI colours' saturation.
    return np.random.default_rng(seed).integers(20, 120, shape, dtype=np.uint8)


def _item(items: tuple[DrawItem, ...], name: str) -> DrawItem | None:
    found = [i for i in items if i.name == name]
    return found[0] if found else None


def _is_red(c: np.ndarray) -> bool:
    return c[2] > 150 and c[1] < 60 and c[0] < 60


def _is_green(c: np.ndarray) -> bool:
    return c[1] > 100 and c[2] < 60 and c[0] < 60


def _is_grey(c: np.ndarray) -> bool:
    return 80 < c[2] < 160 and abs(int(c[2]) - int(c[1])) < 10 and abs(int(c[1]) - int(c[0])) < 10


def _is_amber(c: np.ndarray) -> bool:
    return c[2] > 200 and 120 < c[1] < 220 and c[0] < 60


def _is_dark(c: np.ndarray) -> bool:
    return int(c.max()) < 60


def _is_blue(c: np.ndarray) -> bool:
    return c[0] > 130 and c[2] < 60


CASES: list[tuple[LiveState | None, str | None, str, Callable[[np.ndarray], bool]]] = [
    (_state(alert=True, grade=3, p_pivh=0.9), None, "PIVH ALERT - grade III", _is_red),
    (_state(), None, "No PIVH detected", _is_green),
    (_state("no_valid_image", grade=None, valid=False), None, "NO VALID IMAGE", _is_grey),
    (_state("scoring", valid=False), None, "NO VALID IMAGE", _is_grey),
    (_state("frozen", grade=2), None, "FROZEN IMAGE", _is_amber),
    (_state("starting", grade=None), None, "STARTING", _is_blue),
    (None, None, "STARTING", _is_blue),
    (_state(alert=True, grade=3), "no_signal", "NO SIGNAL", _is_dark),
    (_state(), "restarting", "RESTARTING", _is_blue),
    (_state(), "starting", "STARTING", _is_blue),
]


@pytest.mark.parametrize(("state", "display", "text", "colour_ok"), CASES)
def test_banner_text_and_colour_per_state(
    state: LiveState | None,
    display: str | None,
    text: str,
    colour_ok: Callable[[np.ndarray], bool],
) -> None:
    image = _phantomish((540, 720))
    renderer = OverlayRenderer()
    items = renderer.layout(image.shape, state, None, "x", display)
    out = renderer.render(image, state, None, "x", display)
    bar = _item(items, "banner")
    assert bar is not None and bar.text == text and bar.y == 0 and bar.w == 720
    region = out[: bar.h]
    assert colour_ok(region[2, 2]) and colour_ok(region[bar.h - 3, 700])
    # The text is drawn: many banner pixels differ from the background colour.
    assert (np.abs(region.astype(int) - region[2, 2].astype(int)).sum(axis=2) > 90).sum() > 200


def test_banner_text_is_scaled_to_fit_a_narrow_region() -> None:
    state = _state(alert=True, grade=4, p_pivh=0.99)
    out = OverlayRenderer().render(_phantomish((300, 160)), state)
    assert _is_red(out[1, 1]) and _is_red(out[1, 158])


@given(
    status=st.sampled_from(STATUSES),
    alert=st.booleans(),
    valid=st.booleans(),
    grade=st.none() | st.integers(0, 4),
    display=st.none() | st.sampled_from(DISPLAY_STATUSES),
)
def test_never_normal_unless_scoring_a_valid_image(
    status: str, alert: bool, valid: bool, grade: int | None, display: str | None
) -> None:
    key, text = banner(_state(status, alert, grade, valid), display)
    if key == "normal":
        assert status == "scoring" and valid and not alert and display is None
    if alert and status == "scoring" and display is None:
        assert key == "alert" and text.startswith("PIVH ALERT")


@pytest.mark.parametrize("shape", [(480, 640), (480, 640, 3), (480, 640, 1), (480, 640, 4)])
def test_input_is_never_modified_and_output_is_bgr(shape: tuple[int, ...]) -> None:
    image = _phantomish(shape, seed=1)
    before = image.copy()
    renderer = OverlayRenderer()
    hot = _score(_hot_heatmap(slice(10, 20), slice(10, 20)))
    for state, display in [(c[0], c[1]) for c in CASES]:
        out = renderer.render(image, state, hot, "12.0 fps", display)
        assert out.shape == (480, 640, 3) and out.dtype == np.uint8
        assert not np.shares_memory(out, image)
    np.testing.assert_array_equal(image, before)


def test_gray_input_is_copied_into_all_three_channels() -> None:
    image = _phantomish((400, 500), seed=2)
    out = OverlayRenderer().render(image, _state())
    middle = out[200:260, 100:400]  # no overlay item is drawn there
    for c in range(3):
        np.testing.assert_array_equal(middle[:, :, c], image[200:260, 100:400])


@pytest.mark.parametrize("shape", [(1080, 1920), (480, 640), (200, 200), (900, 300)])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_disclaimer_is_always_drawn_inside_the_image(shape: tuple[int, int], case: int) -> None:
    state, display = CASES[case][0], CASES[case][1]
    line = format_status_line(59.94, 12.3, "onnxruntime", "2024.05-rc1")
    image = np.zeros(shape, np.uint8)
    renderer = OverlayRenderer()
    items = renderer.layout(shape, state, None, line, display)
    d = _item(items, "disclaimer")
    assert d is not None and d.text == DISCLAIMER
    assert d.x >= 0 and d.y >= 0 and d.x + d.w <= shape[1] and d.y + d.h <= shape[0]
    out = renderer.render(image, state, None, line, display)
    patch = out[d.y : d.y + d.h, d.x : d.x + d.w]
    assert (patch.max(axis=2) > 150).sum() > 0.05 * d.w * d.h  # bright text pixels
    s = _item(items, "status")
    assert s is not None and s.text == line
    overlap_x = min(s.x + s.w, d.x + d.w) - max(s.x, d.x)
    overlap_y = min(s.y + s.h, d.y + d.h) - max(s.y, d.y)
    assert overlap_x <= 0 or overlap_y <= 0


def test_status_line_is_optional() -> None:
    items = OverlayRenderer().layout((480, 640), _state())
    assert _item(items, "status") is None and _item(items, "disclaimer") is not None


def _changed_outside_ui(out: np.ndarray, image: np.ndarray, items: tuple) -> np.ndarray:
    changed = (out != cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)).any(axis=2)
    for item in items:
        if item.name != "heatmap":
            changed[max(0, item.y) : item.y + item.h, max(0, item.x) : item.x + item.w] = False
    return changed


@pytest.mark.parametrize("fit", ["letterbox", "stretch"])
@pytest.mark.parametrize(
    ("rows", "cols"), [(slice(14, 20), slice(12, 18)), (slice(9, 12), (slice(22, 27)))]
)
def test_heatmap_contour_is_drawn_around_the_hot_area(rows: slice, cols: slice, fit: str) -> None:
    shape = (400, 600)  # not square: the letterbox padding must be undone
    image = np.full(shape, 90, np.uint8)
    hm = _hot_heatmap(rows, cols)
    renderer = OverlayRenderer(OverlaySettings(fit=fit))
    state = _state(alert=True, grade=3, p_pivh=0.9)
    items = renderer.layout(shape, state, _score(hm))
    out = renderer.render(image, state, _score(hm))
    changed = _changed_outside_ui(out, image, items)
    hot = (heatmap_to_region(hm, shape, fit) >= 0.5).astype(np.uint8)
    kernel = np.ones((11, 11), np.uint8)
    band = cv2.dilate(hot, kernel) & ~cv2.erode(hot, kernel) & 1
    assert changed.sum() > 100
    assert not (changed & (band == 0)).any()  # only near the hot area's edge
    assert (out == (0, 255, 255)).all(axis=2).sum() > 50


@pytest.mark.parametrize(
    ("state", "heatmap"),
    [
        (_state(alert=True, grade=3, p_pivh=0.9), np.zeros((32, 32), np.float32)),
        (_state(p_pivh=0.2), _hot_heatmap(slice(10, 20), slice(10, 20))),
        (
            _state("no_valid_image", grade=None, valid=False),
            _hot_heatmap(slice(10, 20), slice(10, 20)),
        ),
        (_state(alert=True, grade=3), np.full((32, 32), np.nan, np.float32)),
    ],
)
def test_no_contour_when_cold_not_alerting_or_invalid(
    state: LiveState, heatmap: np.ndarray
) -> None:
    image = np.full((400, 600), 90, np.uint8)
    renderer = OverlayRenderer()
    items = renderer.layout(image.shape, state, _score(heatmap))
    out = renderer.render(image, state, _score(heatmap))
    assert _item(items, "heatmap") is None
    assert not _changed_outside_ui(out, image, items).any()


def test_probability_bar_and_threshold_tick() -> None:
    settings = OverlaySettings.from_smoothing(SmoothingConfig(pivh_threshold=0.4))
    renderer = OverlayRenderer(settings)
    state = _state(alert=True, grade=2, p_pivh=0.75)
    items = renderer.layout((1080, 1920), state)
    bar, fill, tick = (_item(items, n) for n in ("bar", "bar_fill", "threshold"))
    assert bar is not None and fill is not None and tick is not None
    assert abs(fill.w - 0.75 * (bar.w - 2)) <= 1
    assert abs(tick.x + tick.w / 2 - (bar.x + 0.4 * bar.w)) <= 2
    assert _item(items, "bar_label").text == "P(PIVH) 0.75"  # type: ignore[union-attr]
    out = renderer.render(np.zeros((1080, 1920, 3), np.uint8), state)
    assert _is_red(out[fill.y + fill.h // 2, fill.x + 2])
    assert (out[bar.y + bar.h // 2, tick.x + tick.w // 2] == 255).all()
    empty = out[bar.y + bar.h // 2, bar.x + bar.w - 4]
    assert not _is_red(empty)


def test_grade_is_shown_only_while_scoring() -> None:
    renderer = OverlayRenderer()
    scoring = renderer.layout((540, 720), _state(alert=True, grade=3, worst=4))
    assert _item(scoring, "grade").text == "Grade III"  # type: ignore[union-attr]
    assert _item(scoring, "worst").text == "Sweep worst grade: IV"  # type: ignore[union-attr]
    for state in (_state("no_valid_image", grade=None, valid=False), _state("frozen", grade=3)):
        items = renderer.layout((540, 720), state)
        assert _item(items, "grade") is None and _item(items, "bar") is None
    assert _item(renderer.layout((540, 720), _state(), display_status="no_signal"), "grade") is None


def test_out_buffer_is_filled_and_must_not_overlap_the_input() -> None:
    image = _phantomish((240, 320, 3))
    renderer = OverlayRenderer()
    out = np.empty_like(image)
    assert renderer.render(image, _state(), out=out) is out
    np.testing.assert_array_equal(out, renderer.render(image, _state()))
    with pytest.raises(ValueError, match="overlaps"):
        renderer.render(image, _state(), out=image)
    with pytest.raises(ValueError):
        renderer.render(image.astype(np.float32), _state())


@pytest.mark.parametrize(
    "bad", [{"pivh_threshold": 0.0}, {"heatmap_level": 1.5}, {"pivh_threshold": "x"}]
)
def test_bad_settings_raise_config_error(bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        OverlaySettings(**bad)


def test_unknown_display_status_is_refused() -> None:
    with pytest.raises(ValueError, match="display_status"):
        OverlayRenderer().layout((100, 100), _state(), display_status="normal")


def test_status_line_format() -> None:
    assert format_status_line(29.94, 41.4, "onnxruntime", "1.2.0") == (
        "29.9 fps | 41 ms | onnxruntime | model 1.2.0"
    )
    assert format_status_line(None, None, "torch", "x").startswith("-- fps | -- ms")
