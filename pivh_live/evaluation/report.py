"""One-page, self-contained HTML report from ``metrics.json`` and PNG plots.

Plots are embedded as base64 data URIs and the page loads nothing from the
network, so the file can be mailed or opened on an offline workstation.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from typing import Any

from pivh_live import DISCLAIMER

_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1100px;color:#222}
.disclaimer{background:#b00020;color:#fff;font-weight:700;text-align:center;
 padding:.6em;font-size:1.2em;letter-spacing:.05em}
h1{font-size:1.5em}h2{font-size:1.15em;border-bottom:1px solid #ccc;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;
 text-align:left;vertical-align:top}th{background:#f2f2f2}td.num{text-align:right;
 font-variant-numeric:tabular-nums}.pass{color:#11691b;font-weight:700}
.fail{color:#b00020;font-weight:700}.plots img{width:32%;min-width:300px}
.note{color:#555;font-size:.9em}code{background:#f4f4f4;padding:0 .2em}
.gallery{display:flex;flex-wrap:wrap;gap:.8em}.gallery figure{margin:0;max-width:340px}
.gallery img{max-width:340px}.gallery figcaption{font-size:.85em}
"""


def _get(d: Mapping[str, Any] | None, path: str) -> Any:
    for key in path.split("."):
        if not isinstance(d, Mapping):
            return None
        d = d.get(key)
    return d


def _num(v: Any, digits: int = 3) -> str:
    return "n/a" if v is None else f"{float(v):.{digits}f}"


def _ci(d: Mapping[str, Any] | None) -> tuple[str, str]:
    """(value, "lo - hi") of an interval dict, "n/a" where undefined."""
    if not isinstance(d, Mapping):
        return "n/a", ""
    if d.get("lo") is None or d.get("hi") is None:
        return _num(d.get("value")), "n/a"
    return _num(d.get("value")), f"{_num(d['lo'])} - {_num(d['hi'])}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], num_cols: int = 0) -> str:
    """HTML table; cells are escaped; the last ``num_cols`` columns are right-aligned."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            cls = ' class="num"' if i >= len(row) - num_cols else ""
            cells.append(f"<td{cls}>{html.escape(str(cell))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _metric_rows(level: Mapping[str, Any], specs: Sequence[tuple[str, str]]) -> list[list[str]]:
    rows = []
    for label, path in specs:
        value, ci = _ci(_get(level, path))
        rows.append([label, value, ci])
    return rows


def headline_rows(clip: Mapping[str, Any]) -> list[list[str]]:
    """Clip-level rows: metric, value, 95% CI (or range)."""
    t_any = _num(_get(clip, "any_pivh.at_threshold.threshold"), 2)
    t_sev = _num(_get(clip, "severe.at_threshold.threshold"), 2)
    prev = _num(_get(clip, "any_pivh.at_threshold.observed_prevalence"))
    nicu = _num(_get(clip, "any_pivh.at_threshold.reweighted.prevalence"))
    nicu_sev = _num(_get(clip, "severe.at_threshold.reweighted.prevalence"))
    rows = _metric_rows(
        clip,
        [
            ("any-PIVH AUC", "any_pivh.auc"),
            (f"any-PIVH sensitivity (p >= {t_any})", "any_pivh.at_threshold.sensitivity"),
            (f"any-PIVH specificity (p >= {t_any})", "any_pivh.at_threshold.specificity"),
            (f"any-PIVH PPV, this dataset (prevalence {prev})", "any_pivh.at_threshold.ppv"),
            (f"any-PIVH NPV, this dataset (prevalence {prev})", "any_pivh.at_threshold.npv"),
            (
                f"any-PIVH PPV at NICU prevalence {nicu} (range)",
                "any_pivh.at_threshold.reweighted.ppv",
            ),
            (
                f"any-PIVH NPV at NICU prevalence {nicu} (range)",
                "any_pivh.at_threshold.reweighted.npv",
            ),
            # The display's own yes/no: the smoothed call (alert, grade >= I),
            # which the bundle's threshold is picked for (docs/training.md).
            ("any-PIVH sensitivity, the display's call", "any_pivh.clip_grade_call.sensitivity"),
            ("any-PIVH specificity, the display's call", "any_pivh.clip_grade_call.specificity"),
            (
                f"any-PIVH NPV of the call at NICU prevalence {nicu} (range)",
                "any_pivh.clip_grade_call.reweighted.npv",
            ),
            ("severe (III-IV) AUC", "severe.auc"),
            (f"severe sensitivity (p >= {t_sev})", "severe.at_threshold.sensitivity"),
            (f"severe specificity (p >= {t_sev})", "severe.at_threshold.specificity"),
            (
                f"severe PPV at NICU prevalence {nicu_sev} (range)",
                "severe.at_threshold.reweighted.ppv",
            ),
            (
                f"severe NPV at NICU prevalence {nicu_sev} (range)",
                "severe.at_threshold.reweighted.npv",
            ),
            ("severe sensitivity at specificity >= 0.93", "severe.at_specificity.sensitivity"),
            ("grade QWK", "grade.qwk"),
            ("grade accuracy", "grade.accuracy"),
        ],
    )
    rows.append(
        [
            "any-PIVH sensitivity, NICU grade mix",
            _num(_get(clip, "any_pivh.nicu_weighted_sensitivity.value")),
            "",
        ]
    )
    rows.append(
        [
            "grade accuracy, NICU grade mix",
            _num(_get(clip, "grade.nicu_weighted_accuracy.value")),
            "",
        ]
    )
    rows.append(["calibration ECE of p(PIVH)", _num(_get(clip, "calibration.ece")), ""])
    un = clip.get("unassessable")
    if un is not None:
        rows.append(["clips with no valid frame (left out above)", str(un.get("n")), ""])
        rows += _metric_rows(
            un,
            [
                ("worst case any-PIVH sensitivity", "any_pivh_worst_case.sensitivity"),
                ("worst case any-PIVH specificity", "any_pivh_worst_case.specificity"),
                ("worst case severe sensitivity", "severe_worst_case.sensitivity"),
                ("worst case severe specificity", "severe_worst_case.specificity"),
            ],
        )
    return rows


def frame_rows(frame: Mapping[str, Any]) -> list[list[str]]:
    t_any = _num(_get(frame, "any_pivh.at_threshold.threshold"), 2)
    rows = _metric_rows(
        frame,
        [
            ("any-PIVH AUC", "any_pivh.auc"),
            (f"any-PIVH sensitivity (p >= {t_any})", "any_pivh.at_threshold.sensitivity"),
            (f"any-PIVH specificity (p >= {t_any})", "any_pivh.at_threshold.specificity"),
            ("severe (III-IV) AUC", "severe.auc"),
            ("grade QWK (argmax)", "grade.qwk"),
            ("grade accuracy (argmax)", "grade.accuracy"),
            ("validity AUC (brain shown)", "validity.auc"),
            ("validity accuracy", "validity.at_threshold.accuracy"),
        ],
    )
    rows.append(["calibration ECE of p(PIVH)", _num(_get(frame, "calibration.ece")), ""])
    return rows


def target_rows(targets: Sequence[Mapping[str, Any]]) -> str:
    out = []
    for t in targets:
        verdict = '<span class="pass">PASS</span>' if t["met"] else '<span class="fail">FAIL</span>'
        cells = [
            t["name"],
            t["target"],
            _num(t.get("value")),
            _num(t.get("ci_lo")),
            t.get("detail", ""),
        ]
        tds = "".join(f"<td>{html.escape(str(c))}</td>" for c in cells)
        out.append(f"<tr>{tds}<td>{verdict}</td></tr>")
    head = "".join(
        f"<th>{h}</th>" for h in ("target", "goal", "value", "95% CI low", "detail", "met")
    )
    return f"<table><tr>{head}</tr>{''.join(out)}</table>"


def _text(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, Mapping):
        return ", ".join(f"{k} {_text(x)}" for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return ", ".join(_text(x) for x in v)
    return str(v)


def _kv(pairs: Sequence[tuple[str, Any]]) -> str:
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(_text(v))}</td></tr>" for k, v in pairs
    )
    return f"<table>{rows}</table>"


def _left_out(clip: Mapping[str, Any]) -> str:
    n = _get(clip, "unassessable.n")
    return f"; {n} with no valid frame left out" if n else ""


def _parts_section(parts: Sequence[Mapping[str, Any]] | None) -> list[str]:
    """The pooled datasets, one row each with its own headline numbers and report."""
    if not parts:
        return []
    rows = []
    for p in parts:
        link = html.escape(str(p.get("report", "")))
        rows.append(
            f'<tr><td><a href="{link}">{html.escape(str(p.get("name")))}</a></td>'
            + "".join(
                f"<td>{html.escape(c)}</td>"
                for c in (
                    _text(p.get("seed")),
                    _text(p.get("n_cases")),
                    _num(p.get("clip_any_pivh_auc")),
                    _num(p.get("clip_severe_sensitivity_at_spec_0_93")),
                    _num(p.get("clip_grade_qwk")),
                    f"{p.get('targets_met')} of {p.get('n_targets')}",
                )
            )
            + "</tr>"
        )
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "dataset", "seed", "clips", "clip AUC", "severe sens. at spec >= 0.93", "kappa",
            "targets met",
        )
    )  # fmt: skip
    return [
        f"<h2>Datasets pooled ({len(parts)}; the metrics below are over all their clips)</h2>",
        f"<table><tr>{head}</tr>{''.join(rows)}</table>",
    ]


def render_report(
    metrics: Mapping[str, Any],
    images: Mapping[str, bytes],
    gallery: Mapping[str, bytes] | None = None,
) -> str:
    """The report page for one evaluation; ``images`` maps a caption to PNG bytes.

    ``gallery`` maps each ``clip.disagreements`` image path to its PNG bytes.
    """
    from pivh_live.evaluation.disagreements import gallery_html

    model, data, settings = metrics["model"], metrics["dataset"], metrics["settings"]
    clip, frame = metrics["clip"], metrics.get("frame")
    title = f"pivh-live evaluation: {model.get('name')} {model.get('version')}"
    parts = [
        f'<div class="disclaimer">{html.escape(DISCLAIMER)}</div>',
        f"<h1>{html.escape(title)}</h1>",
        "<h2>Model</h2>",
        _kv(
            [
                ("name", model.get("name")),
                ("version", model.get("version")),
                ("sha256", model.get("sha256")),
                ("intended use", model.get("intended_use")),
                ("thresholds", model.get("thresholds")),
                ("test-time augmentation", model.get("tta", "none")),
                ("input norm", model.get("norm", "none")),
                ("engine", settings.get("engine")),
                (
                    "input shifts (robustness check)",
                    ", ".join(settings.get("shifts") or []) or "none",
                ),
            ]
        ),
        "<h2>Dataset</h2>",
        _kv(
            [
                ("path", data.get("path")),
                ("name", data.get("name")),
                ("seed", data.get("seed")),
                ("cases", data.get("n_cases")),
                ("frames", data.get("n_frames")),
                ("frames with grade labels", data.get("n_labelled_frames")),
                ("clip grade mix (0, I, II, III, IV)", data.get("clip_grade_counts")),
                ("clips showing less than the exam grade", data.get("clips_below_exam_grade")),
                ("splits", data.get("splits")),
                ("overlap with training data", data.get("overlap_with_training") or "none found"),
            ]
        ),
        *_parts_section(data.get("parts")),
        "<h2>Targets (clip level; facts, not tuned)</h2>",
        target_rows(metrics.get("targets", [])),
        f"<h2>Clip level (headline, n = {clip.get('n_clips')} clips{_left_out(clip)})</h2>",
        _table(["metric", "value", "95% CI"], headline_rows(clip), num_cols=2),
    ]
    if frame:
        parts += [
            f"<h2>Frame level (raw per-frame outputs, n = {frame.get('n_frames')} frames "
            f"in {frame.get('n_cases')} cases)</h2>",
            _table(["metric", "value", "95% CI"], frame_rows(frame), num_cols=2),
        ]
    if images:
        parts.append('<h2>Plots</h2><div class="plots">')
        for caption, png in images.items():
            b64 = base64.b64encode(png).decode("ascii")
            alt = html.escape(caption)
            parts.append(f'<img alt="{alt}" title="{alt}" src="data:image/png;base64,{b64}">')
        parts.append("</div>")
    parts.append(gallery_html(list(clip.get("disagreements") or []), dict(gallery or {})))
    parts.append(
        '<p class="note">AUC and QWK intervals: percentile bootstrap '
        f"({settings.get('n_bootstrap')} resamples, seed {settings.get('seed')}; frame level "
        "resamples whole cases). Proportions: Wilson 95% intervals. PPV/NPV at NICU "
        "prevalence: Bayes re-weighting; the range uses the Wilson bounds of sensitivity "
        "and specificity. Definitions: docs/evaluation.md. Synthetic data: these numbers "
        "say nothing about performance on patients.</p>"
    )
    body = "\n".join(parts)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>"
        f"<body>\n{body}\n</body></html>\n"
    )
