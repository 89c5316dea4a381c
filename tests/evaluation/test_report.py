"""The HTML report: disclaimer first, headline table, embedded plots, nothing remote."""

from __future__ import annotations

import base64
import html
import re

import numpy as np
import pytest

from pivh_live import DISCLAIMER
from pivh_live.evaluation import summary
from pivh_live.evaluation.report import headline_rows, render_report

THR = {"pivh": 0.5, "severe": 0.4, "valid": 0.5}


def _metrics(name: str = "tiny-net") -> dict:
    rng = np.random.default_rng(0)
    t = np.repeat(np.arange(5), 6)
    ca = summary.ClipArrays(
        label_grade=t,
        pred_grade=np.clip(t + rng.integers(-1, 2, t.size), 0, 4),
        p_pivh=np.clip(t / 4 + rng.normal(0, 0.2, t.size), 0, 1),
        p_severe=np.clip((t >= 3) * 0.5 + rng.random(t.size) * 0.5, 0, 1),
    )
    n = 300
    vg = rng.integers(-1, 5, n)
    probs = rng.dirichlet(np.ones(5), n)
    fa = summary.FrameArrays(
        np.repeat(np.arange(30), 10), vg, (vg >= 0).astype(int), probs, rng.random(n)
    )
    clip = summary.clip_metrics(ca, THR, 50, 0)
    return {
        "model": {"name": name, "version": "0.1.0", "sha256": "ab" * 32, "intended_use": "x"},
        "dataset": {"path": "/d", "name": "phantom-test", "seed": 3, "n_cases": 30},
        "settings": {"engine": "onnxruntime", "n_bootstrap": 50, "seed": 0},
        "targets": summary.targets(clip),
        "clip": clip,
        "frame": summary.frame_metrics(fa, THR, 50, 0),
    }


def test_disclaimer_is_visible_at_the_top() -> None:
    page = render_report(_metrics(), {})
    body = page.split("<body>", 1)[1]
    first_text = re.sub(r"<[^>]+>", "", body).strip().splitlines()[0]
    assert first_text == DISCLAIMER


def test_headline_table_holds_the_computed_values() -> None:
    metrics = _metrics()
    page = render_report(metrics, {})
    auc = metrics["clip"]["any_pivh"]["auc"]
    assert f"{auc['value']:.3f}" in page
    assert f"{auc['lo']:.3f} - {auc['hi']:.3f}" in page
    assert "any-PIVH AUC" in page and "grade QWK" in page
    assert "NICU prevalence 0.422" in page
    for t in metrics["targets"]:
        assert t["name"] in html.unescape(page)
    verdicts = page.count(">PASS<") + page.count(">FAIL<")
    assert verdicts == len(metrics["targets"])


def test_headline_rows_show_na_for_undefined_values() -> None:
    metrics = _metrics()
    metrics["clip"]["severe"]["auc"] = {"value": None, "lo": None, "hi": None}
    rows = {r[0]: r for r in headline_rows(metrics["clip"])}
    assert rows["severe (III-IV) AUC"][1:] == ["n/a", "n/a"]


def test_headline_rows_show_the_displays_call() -> None:
    metrics = _metrics()
    call = metrics["clip"]["any_pivh"]["clip_grade_call"]
    rows = {r[0]: r for r in headline_rows(metrics["clip"])}
    row = rows["any-PIVH sensitivity, the display's call"]
    assert row[1] != "n/a" and float(row[1]) == pytest.approx(
        call["sensitivity"]["value"], abs=0.01
    )


def test_plots_are_embedded_and_nothing_is_fetched() -> None:
    png = b"\x89PNG\r\n\x1a\nfake-bytes"
    page = render_report(_metrics(), {"ROC any-PIVH": png})
    uri = re.search(r'src="data:image/png;base64,([^"]+)"', page)
    assert uri is not None
    assert base64.b64decode(uri.group(1)) == png
    assert not re.search(r"(src|href)=\"(https?:)?//", page)


def test_text_from_the_card_is_escaped() -> None:
    page = render_report(_metrics(name="<script>alert(1)</script>"), {})
    assert "<script>" not in page
    assert "&lt;script&gt;" in page


@pytest.mark.parametrize("missing_frame", [True, False])
def test_frame_section_only_when_present(missing_frame: bool) -> None:
    metrics = _metrics()
    if missing_frame:
        metrics["frame"] = None
    page = render_report(metrics, {})
    assert ("Frame level" in page) is not missing_frame


def test_unassessable_clips_are_announced() -> None:
    t = np.array([0, 0, 1, 3])
    ca = summary.ClipArrays(
        t, t, np.array([0.1, 0.0, 0.9, 0.9]), np.array([0.0, 0.0, 0.1, 0.9]),
        np.array([True, False, True, True]),
    )  # fmt: skip
    metrics = _metrics()
    metrics["clip"] = summary.clip_metrics(ca, THR, 20, 0)
    page = html.unescape(render_report(metrics, {}))
    assert "n = 3 clips; 1 with no valid frame left out" in page
    assert "worst case any-PIVH specificity" in page
