"""Session report: one self-contained HTML file and a PDF with the same content.

Contents: the research-use disclaimer (top and bottom, and on every PDF
page), the session's facts, the timeline plot (P(PIVH) per frame and
smoothed, displayed grade, alert spans, findings), the alert spans, the
findings with their keyframes, and a summary of the model card.

The PDF (`pivh_live.web.report_pdf`) draws the same content with Pillow.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pivh_live import DISCLAIMER, __version__
from pivh_live.frames import GRADE_NAMES
from pivh_live.web.timeline import Timeline, build_timeline, card_summary, group_findings

MAX_KEYFRAMES = 24
KEYFRAME_WIDTH = 480


@dataclass(frozen=True)
class ReportFinding:
    t_s: float
    seq: int
    label: str  # "alert onset, new worst grade"
    grade: int
    p: float
    image: bytes | None  # JPEG of the keyframe, scaled to KEYFRAME_WIDTH

    @property
    def caption(self) -> str:
        grade = GRADE_NAMES[max(0, min(4, self.grade))]
        return (
            f"{self.t_s:.2f} s - {self.label} - grade {grade} (p {self.p:.2f}) - frame {self.seq}"
        )


@dataclass(frozen=True)
class ReportData:
    session_id: str
    facts: tuple[tuple[str, str], ...]
    timeline: Timeline
    findings: tuple[ReportFinding, ...]
    card: tuple[tuple[str, str], ...]
    generated: str


def collect_report(
    store: Any, session_id: str, cards: Callable[[Mapping[str, Any]], Any]
) -> ReportData:
    """Everything the report shows, read from the store (keyframes scaled down)."""
    from pivh_live.web.review import duration_text, local_time

    info = store.get(session_id)
    meta = store.meta(session_id)
    timeline = build_timeline(store.frames(session_id), meta.get("t0_capture_ns"))
    keyframes = {k.seq: k for k in store.keyframes(session_id)}
    findings = []
    for g in group_findings(store.findings(session_id))[:MAX_KEYFRAMES]:
        image = None
        if g.seq in keyframes:
            image = _thumbnail(store.keyframe_path(session_id, g.seq))
        findings.append(ReportFinding(g.t_s, g.seq, g.label, g.grade, g.p, image))
    model = meta.get("model") or {}
    facts = (
        ("Session", session_id),
        ("Started", local_time(info.started)),
        ("Ended", local_time(info.ended)),
        ("Duration", duration_text(info.duration_s)),
        ("Worst grade shown", GRADE_NAMES[max(0, min(4, info.worst_grade))]),
        ("Alert onsets", str(info.alerts)),
        ("Video frames / results", f"{info.frames} / {len(timeline.t)}"),
        ("Status", info.status),
        ("Engine", info.engine or "-"),
        ("Source kind", info.source_kind or "-"),
    )
    return ReportData(
        session_id=session_id,
        facts=facts,
        timeline=timeline,
        findings=tuple(findings),
        card=tuple(card_summary(model, cards(model))),
        generated=dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z"),
    )


def _thumbnail(path: Any) -> bytes | None:
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if im.width > KEYFRAME_WIDTH:
                size = (KEYFRAME_WIDTH, max(1, round(im.height * KEYFRAME_WIDTH / im.width)))
                im = im.resize(size, Image.Resampling.LANCZOS)
            out = io.BytesIO()
            im.save(out, "JPEG", quality=85)
            return out.getvalue()
    except OSError:
        return None


# --- the timeline plot ----------------------------------------------------------------


def pil_font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def timeline_image(
    timeline: Timeline, findings: Sequence[ReportFinding], size: tuple[int, int] = (1100, 300)
) -> Image.Image:
    """P(PIVH) per frame (grey) and smoothed (blue), grade steps (purple), alerts (red)."""
    w, h = size
    im = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(im)
    font = pil_font(max(12, h // 18))
    ml, mr, mt, mb = 60, 50, max(16, h // 12), 36
    pw, ph = w - ml - mr, h - mt - mb
    dur = timeline.duration_s or 1.0

    def x(t: float) -> float:
        return ml + min(max(t, 0.0), dur) / dur * pw

    def yp(p: float) -> float:
        return mt + (1.0 - min(max(p, 0.0), 1.0)) * ph

    def yg(g: int) -> float:
        return mt + (1.0 - g / 4.0) * ph

    for a, b in timeline.spans:
        d.rectangle([x(a), mt, max(x(a) + 1, x(b)), mt + ph], fill=(246, 179, 179))
    for p in (0.0, 0.5, 1.0):
        d.line([ml, yp(p), ml + pw, yp(p)], fill=(220, 220, 220))
        d.text((ml - 8, yp(p)), f"{p:.1f}", fill="black", font=font, anchor="rm")
    for g, name in enumerate(GRADE_NAMES):
        d.text((ml + pw + 8, yg(g)), name, fill=(123, 31, 162), font=font, anchor="lm")
    if timeline.t:
        xs = [x(t) for t in timeline.t]
        d.line(list(zip(xs, [yp(p) for p in timeline.p], strict=True)), fill=(143, 163, 179),
               width=1)  # fmt: skip
        d.line(list(zip(xs, [yp(p) for p in timeline.ps], strict=True)), fill=(11, 87, 208),
               width=3)  # fmt: skip
        steps: list[tuple[float, float]] = []
        for i, g in enumerate(timeline.grade):
            if i:
                steps.append((xs[i], yg(timeline.grade[i - 1])))
            steps.append((xs[i], yg(g)))
        d.line(steps, fill=(123, 31, 162), width=2)
    for f in findings:
        fx = x(f.t_s)
        d.polygon([(fx - 7, mt - 4), (fx + 7, mt - 4), (fx, mt + 9)], fill=(200, 0, 0))
    step = _nice_step(dur / 8)
    n_ticks = int(dur / step + 1e-9) + 1
    for k in range(n_ticks):
        t = k * step
        d.line([x(t), mt + ph, x(t), mt + ph + 5], fill="black")
        label = f"{t:.1f} s" if step < 1 else f"{t:.0f} s"
        d.text((x(t), mt + ph + 8), label, fill="black", font=font, anchor="mt")
    d.rectangle([ml, mt, ml + pw, mt + ph], outline=(150, 150, 150))
    d.text((ml, 2), "P(PIVH)", fill=(11, 87, 208), font=font)
    d.text((ml + pw, 2), "grade", fill=(123, 31, 162), font=font, anchor="ra")
    return im


def _nice_step(raw: float) -> float:
    p = 10.0 ** np.floor(np.log10(max(raw, 1e-3)))
    for k in (1, 2, 5, 10):
        if k * p >= raw:
            return float(k * p)
    return float(10 * p)


def _png(im: Image.Image) -> bytes:
    out = io.BytesIO()
    im.save(out, "PNG", optimize=True)
    return out.getvalue()


# --- HTML -------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1100px;color:#222}
.disclaimer{background:#111;color:#ffd400;font-weight:800;text-align:center;padding:.6em;
 font-size:1.2em;letter-spacing:.05em}
h1{font-size:1.5em}h2{font-size:1.15em;border-bottom:1px solid #ccc;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;
 text-align:left;vertical-align:top}th{background:#f2f2f2}
.timeline{width:100%;border:1px solid #ccc}.findings{display:flex;flex-wrap:wrap;gap:1em}
figure{margin:0;border:1px solid #ccc;padding:.4em;background:#fafafa}
figure img{width:320px;display:block}.note{color:#555;font-size:.9em}
"""


def _rows(rows: Sequence[tuple[str, str]]) -> str:
    return "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)


def report_html(data: ReportData) -> str:
    """The report as one HTML file: inline CSS, images as data URIs, no script, no network."""
    plot = base64.b64encode(_png(timeline_image(data.timeline, data.findings))).decode()
    spans = (
        "".join(
            f"<tr><td>{a:.2f} s</td><td>{b:.2f} s</td><td>{b - a:.2f} s</td></tr>"
            for a, b in data.timeline.spans
        )
        or '<tr><td colspan="3">No alert.</td></tr>'
    )
    figures = []
    for f in data.findings:
        img = ""
        if f.image is not None:
            uri = "data:image/jpeg;base64," + base64.b64encode(f.image).decode()
            img = f'<img alt="keyframe" src="{uri}">'
        figures.append(f"<figure>{img}<figcaption>{html.escape(f.caption)}</figcaption></figure>")
    disclaimer = f'<div class="disclaimer">{html.escape(DISCLAIMER)}</div>'
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>pivh-live session report {html.escape(data.session_id)}</title>
<style>{_CSS}</style></head><body>
{disclaimer}
<h1>pivh-live session report</h1>
<p class="note">Research software, not a medical device. Images show the ultrasound image region
only. Generated {html.escape(data.generated)} by pivh-live {html.escape(__version__)}.</p>
<h2>Session</h2><table>{_rows(data.facts)}</table>
<h2>Timeline</h2>
<img class="timeline" alt="timeline of P(PIVH), grade and alerts"
 src="data:image/png;base64,{plot}">
<p class="note">Grey: the model's P(PIVH) per frame; blue: smoothed P(PIVH) (the display's bar);
purple: displayed grade (0-IV, right axis); red bands: alert; red marks: findings.</p>
<h2>Alert spans</h2><table><tr><th>from</th><th>to</th><th>length</th></tr>{spans}</table>
<h2>Findings and keyframes</h2>
<div class="findings">{"".join(figures) or "<p>No findings.</p>"}</div>
<h2>Model</h2><table>{_rows(data.card)}</table>
{disclaimer}
</body></html>
"""
