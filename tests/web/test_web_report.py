"""Session report (HTML and PDF), the timeline builder and the model card lookup."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from PIL import Image

from pivh_live import DISCLAIMER
from pivh_live.bundle import INTENDED_USE, make_card, write_json_atomic
from pivh_live.recording import SessionStore
from pivh_live.web.app import create_app
from pivh_live.web.auth import REPORT_CSP
from pivh_live.web.report import collect_report, timeline_image
from pivh_live.web.report_pdf import report_pages
from pivh_live.web.server import WebServer
from pivh_live.web.timeline import (
    CardFinder,
    alert_spans,
    build_timeline,
    card_summary,
    group_findings,
)

SHA = "ab" * 32


def write_bundle(root: Path, name: str = "pivh-test", sha: str = SHA) -> Path:
    path = root / name
    path.mkdir(parents=True)
    card = make_card(name=name, version="1.2.3", created="2025-01-01T00:00:00Z", input_size=256,
                     heatmap_size=32, thresholds={"pivh": 0.42, "severe": 0.3, "valid": 0.5},
                     metrics={"validation": {"auc": 0.912, "sensitivity": {"value": 0.88}}},
                     dataset={}, sha256={"model.onnx": sha}, software={})  # fmt: skip
    write_json_atomic(path / "model.json", card)
    return path


@pytest.fixture(scope="module")
def served(recorded, tmp_path_factory):
    bundles = tmp_path_factory.mktemp("bundles")
    write_bundle(bundles, sha="0" * 64)  # the recorded session's model hash
    store = SessionStore(recorded)
    app = create_app(store=store, cards=CardFinder([bundles]))
    with WebServer(app, "127.0.0.1", 0) as server:
        yield server, store, store.list_sessions()[0].id


def test_html_report_is_self_contained_with_disclaimer_plot_and_keyframes(served) -> None:
    server, store, sid = served
    r = httpx.get(f"{server.url}/sessions/{sid}/report.html", timeout=60)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert f'filename="pivh-live-session-{sid}.html"' in r.headers["content-disposition"]
    assert r.headers["content-security-policy"] == REPORT_CSP
    text = r.text
    assert text.count(DISCLAIMER) >= 2 and "<script" not in text
    assert not re.findall(r'(?:src|href)="(?!data:)', text)  # nothing loaded from anywhere
    images = re.findall(r'src="data:image/(png|jpeg);base64,([^"]+)"', text)
    decoded = [Image.open(io.BytesIO(base64.b64decode(b))) for _, b in images]
    assert decoded[0].size == (1100, 300)  # the timeline plot
    assert len(decoded) - 1 == len(group_findings(store.findings(sid)))  # one per keyframe
    assert "pivh-test 1.2.3" in text and INTENDED_USE in text and "validation auc 0.912" in text
    assert "PIVH" in text and "2.12 s" in text  # the alert span starts at the onset


def test_pdf_report_is_a_pdf_with_every_page(served) -> None:
    server, store, sid = served
    r = httpx.get(f"{server.url}/sessions/{sid}/report.pdf", timeout=60)
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    pdf = r.content
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    pages = report_pages(collect_report(store, sid, CardFinder([])))
    assert len(re.findall(rb"/Type\s*/Page\b", pdf)) == len(pages) >= 1
    first = pages[0]
    assert first.size == (1240, 1754)
    # The disclaimer bar on top of every page: dark with yellow text.
    for page in pages:
        bar = page.crop((0, 0, 1240, 60)).convert("RGB")
        colours = set(bar.get_flattened_data())
        assert (17, 17, 17) in colours and any(
            r > 200 and g > 180 and b < 80 for r, g, b in colours
        )


def test_timeline_plot_marks_the_alert_span(served) -> None:
    _, store, sid = served
    data = collect_report(store, sid, CardFinder([]))
    im = timeline_image(data.timeline, data.findings, (1000, 300)).convert("RGB")
    ((a, b),) = data.timeline.spans
    dur = data.timeline.duration_s
    ml, pw = 60, 1000 - 60 - 50

    def px(t: float) -> int:
        return round(ml + t / dur * pw)

    pink = (246, 179, 179)
    assert im.getpixel((px((a + b) / 2), 150)) in (pink, (11, 87, 208), (123, 31, 162))
    assert im.getpixel((px(a / 2), 200)) == (255, 255, 255)  # before the alert: no band


def rec(t: float, status: str = "scoring", alert: bool = False, grade: int = 0) -> dict:
    return {"frame": round(t * 10), "t": t, "t_capture_ns": 5_000_000_000 + round(t * 1e9),
            "status": status, "alert": alert, "grade": grade, "valid": status == "scoring",
            "p_pivh": 0.9 if alert else 0.1, "p_pivh_smoothed": 0.8 if alert else 0.05}  # fmt: skip


def test_build_timeline_banners_times_and_spans() -> None:
    records = [rec(0.0, "starting"), rec(0.1), rec(0.2, alert=True, grade=3),
               rec(0.3, alert=True, grade=3), rec(0.4), rec(0.5, "no_valid_image"),
               rec(0.6, "frozen", alert=True, grade=3)]  # fmt: skip
    tl = build_timeline(records, t0_ns=5_000_000_000)
    assert tl.t == pytest.approx((0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6))
    texts = [tl.banners[i][1] for i in tl.banner]
    assert texts == ["STARTING", "No PIVH detected", "PIVH ALERT - grade III",
                     "PIVH ALERT - grade III", "No PIVH detected", "NO VALID IMAGE",
                     "FROZEN IMAGE"]  # fmt: skip
    assert tl.grade == (0, 0, 3, 3, 0, 0, 0)  # a grade only while scoring
    assert len(tl.spans) == 1 and tl.spans[0] == pytest.approx((0.2, 0.4))
    assert tl.worst_grade == 3
    # Without capture stamps: media time from the first line.
    bare = [
        {k: v for k, v in r.items() if k != "t_capture_ns"} | {"t": r["t"] + 7} for r in records
    ]
    assert build_timeline(bare, t0_ns=None).t == tl.t


def test_alert_spans_edges() -> None:
    assert alert_spans([], []) == ()
    assert alert_spans([0, 1, 2], [True, True, True]) == ((0, 2),)
    assert alert_spans([0, 1, 2, 3], [False, True, False, True]) == ((1, 2), (3, 3))


def test_findings_of_one_frame_are_grouped() -> None:
    f = SimpleNamespace
    groups = group_findings([f(seq=9, t_s=2.0, grade=3, p=0.7, kind="worst_grade"),
                             f(seq=4, t_s=1.0, grade=1, p=0.9, kind="alert_onset"),
                             f(seq=4, t_s=1.0, grade=2, p=0.8, kind="worst_grade")])  # fmt: skip
    assert [(g.seq, g.grade, g.p, g.label) for g in groups] == [
        (4, 2, 0.9, "alert onset, new worst grade"),
        (9, 3, 0.7, "new worst grade"),
    ]


def test_card_finder_matches_by_hash(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("PIVH_LIVE_MODEL", raising=False)
    write_bundle(tmp_path / "models", "a", sha="11" * 32)
    write_bundle(tmp_path / "models", "b", sha=SHA)
    (tmp_path / "models" / "broken").mkdir()
    (tmp_path / "models" / "broken" / "model.json").write_text("{not json")
    finder = CardFinder([tmp_path / "models"])
    assert finder({"name": "x", "sha256": SHA})["name"] == "b"
    assert finder({"name": "a", "version": "1.2.3"})["sha256"]["model.onnx"] == "11" * 32
    assert finder({"sha256": "22" * 32}) is None
    rows = dict(card_summary({"name": "b"}, finder({"sha256": SHA})))
    assert rows["Model"] == "b 1.2.3" and rows["Intended use"] == INTENDED_USE
    assert "pivh 0.42" in rows["Thresholds"] and "validation sensitivity 0.88" in rows["Metrics"]
    missing = dict(card_summary({"name": "z", "version": "2", "sha256": SHA}, None))
    assert missing["Model"] == "z 2" and "not found" in missing["Model card"]
