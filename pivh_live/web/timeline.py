"""A recorded session's journal as a timeline: per-result time, P(PIVH), grade, alert, banner.

Times are **video seconds**: ``(t_capture_ns - t0_capture_ns) / 1e9``, the
recorder's video clock (docs/recording.md), so a timeline point, a finding's
``t_s`` and the player's position are on one axis. The banner of each
result is computed by `pivh_live.overlay.banner`, the live overlay's own
rule, so the review overlay says what the bedside display said.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pivh_live.frames import GRADE_NAMES
from pivh_live.overlay import banner


@dataclass(frozen=True)
class _JournalState:
    """The fields of a `LiveState` that `overlay.banner` reads, from one journal line."""

    status: str
    alert: bool
    grade: int | None
    valid: bool


@dataclass(frozen=True)
class Timeline:
    """Parallel per-result lists, plus the distinct banners and the alert spans (video seconds)."""

    t: tuple[float, ...]
    seq: tuple[int, ...]
    p: tuple[float, ...]  # the model's own P(PIVH) per frame
    ps: tuple[float, ...]  # smoothed P(PIVH), the display's bar
    grade: tuple[int, ...]  # the displayed grade (0 when none is shown)
    alert: tuple[bool, ...]
    banner: tuple[int, ...]  # index into ``banners``
    banners: tuple[tuple[str, str, str], ...]  # (style key, text, grade text)
    spans: tuple[tuple[float, float], ...]
    worst_grade: int

    @property
    def duration_s(self) -> float:
        return self.t[-1] if self.t else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "t": list(self.t),
            "seq": list(self.seq),
            "p": list(self.p),
            "ps": list(self.ps),
            "g": list(self.grade),
            "a": [1 if a else 0 for a in self.alert],
            "b": list(self.banner),
            "banners": [list(b) for b in self.banners],
            "spans": [list(s) for s in self.spans],
            "duration": self.duration_s,
            "worst_grade": self.worst_grade,
        }


def _num(value: Any, default: float = 0.0) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return default
    return x if math.isfinite(x) else default


def record_time(record: Mapping[str, Any], t0_ns: int | None, t_first: float) -> float:
    """Video seconds of a journal line (media time from the first line without a stamp)."""
    stamp = record.get("t_capture_ns")
    if t0_ns is not None and isinstance(stamp, int):
        return max(0.0, (stamp - t0_ns) / 1e9)
    return max(0.0, _num(record.get("t")) - t_first)


def build_timeline(records: Iterable[Mapping[str, Any]], t0_ns: int | None) -> Timeline:
    """Timeline of the journal's frame lines (in order; out-of-order times are kept)."""
    t: list[float] = []
    seq: list[int] = []
    p: list[float] = []
    ps: list[float] = []
    grade: list[int] = []
    alert: list[bool] = []
    index: list[int] = []
    banners: dict[tuple[str, str, str], int] = {}
    t_first: float | None = None
    for rec in records:
        if t_first is None:
            t_first = _num(rec.get("t"))
        status = str(rec.get("status", "starting"))
        g = min(4, max(0, int(_num(rec.get("grade")))))
        shown = status == "scoring"
        state = _JournalState(status, bool(rec.get("alert")), g if shown else None,
                              bool(rec.get("valid")))  # fmt: skip
        key, text = banner(state)  # type: ignore[arg-type]  # duck-typed LiveState
        grade_text = GRADE_NAMES[g] if shown else ""
        entry = (key, text, grade_text)
        index.append(banners.setdefault(entry, len(banners)))
        t.append(round(record_time(rec, t0_ns, t_first), 4))
        seq.append(int(_num(rec.get("frame"), -1)))
        p.append(round(_num(rec.get("p_pivh")), 4))
        ps.append(round(_num(rec.get("p_pivh_smoothed")), 4))
        grade.append(g if shown else 0)
        alert.append(bool(rec.get("alert")) and shown)
    return Timeline(
        t=tuple(t),
        seq=tuple(seq),
        p=tuple(p),
        ps=tuple(ps),
        grade=tuple(grade),
        alert=tuple(alert),
        banner=tuple(index),
        banners=tuple(banners),
        spans=alert_spans(t, alert),
        worst_grade=max(grade, default=0),
    )


def alert_spans(t: Sequence[float], alert: Sequence[bool]) -> tuple[tuple[float, float], ...]:
    """[start, end] video seconds of each run of alert results; one still on ends at the last."""
    spans: list[tuple[float, float]] = []
    start: float | None = None
    for ti, on in zip(t, alert, strict=True):
        if on and start is None:
            start = ti
        elif not on and start is not None:
            spans.append((start, ti))
            start = None
    if start is not None:
        spans.append((start, t[-1]))
    return tuple(spans)


@dataclass(frozen=True)
class FindingGroup:
    """The findings of one frame (an alert onset is often also a new worst grade)."""

    seq: int
    t_s: float
    grade: int
    p: float
    kinds: tuple[str, ...]

    @property
    def label(self) -> str:
        names = {"alert_onset": "alert onset", "worst_grade": "new worst grade"}
        return ", ".join(names.get(k, k) for k in self.kinds)


def group_findings(findings: Iterable[Any]) -> list[FindingGroup]:
    """Findings (``seq, t_s, grade, p, kind``) merged per frame, in time order."""
    groups: dict[tuple[int, float], FindingGroup] = {}
    for f in findings:
        key = (int(f.seq), float(f.t_s))
        old = groups.get(key)
        if old is None:
            groups[key] = FindingGroup(key[0], key[1], int(f.grade), float(f.p), (str(f.kind),))
        elif f.kind not in old.kinds:
            grade, p = max(old.grade, int(f.grade)), max(old.p, float(f.p))
            groups[key] = FindingGroup(key[0], key[1], grade, p, (*old.kinds, str(f.kind)))
    return sorted(groups.values(), key=lambda g: (g.t_s, g.seq))


class CardFinder:
    """Finds the model card of a session's model among bundle directories, by ONNX hash.

    A session records the model's name, version and SHA-256 only; the card
    (intended use, training data, thresholds, metrics) is read from a bundle
    on this machine whose ``model.onnx`` hash matches (name and version when
    the session has no hash). Looks in ``bundles`` (each a bundle directory
    or a directory of bundles), ``$PIVH_LIVE_MODEL`` and the shipped models.
    """

    def __init__(self, bundles: Sequence[str | Path] = ()) -> None:
        self.bundles = [Path(b) for b in bundles]

    def candidates(self) -> list[Path]:
        import os

        from pivh_live.bundle import CARD_FILE, MODEL_ENV

        roots = list(self.bundles)
        if os.environ.get(MODEL_ENV):
            roots.append(Path(os.environ[MODEL_ENV]))
        roots.append(Path(__file__).resolve().parents[2] / "models")
        found: list[Path] = []
        for root in roots:
            if (root / CARD_FILE).is_file():
                found.append(root)
            elif root.is_dir():
                found += sorted(p for p in root.iterdir() if (p / CARD_FILE).is_file())
        return found

    def __call__(self, model: Mapping[str, Any]) -> dict[str, Any] | None:
        from pivh_live.bundle import ONNX_FILE, read_card
        from pivh_live.errors import ModelBundleError

        sha = str(model.get("sha256") or "")
        for path in self.candidates():
            try:
                card = read_card(path)
            except ModelBundleError:
                continue
            if sha:
                if card.get("sha256", {}).get(ONNX_FILE) == sha:
                    return card
            elif card.get("name") == model.get("name") and card.get("version") == model.get(
                "version"
            ):
                return card
        return None


def card_summary(model: Mapping[str, Any], card: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """(label, text) rows describing the model for a report."""
    from pivh_live.bundle import INTENDED_USE, ONNX_FILE

    if card is None:
        return [
            ("Model", f"{model.get('name') or '?'} {model.get('version') or ''}".strip()),
            ("SHA-256 (model.onnx)", str(model.get("sha256") or "not recorded")),
            ("Intended use", INTENDED_USE),
            ("Model card", "not found on this machine (pass --model to pivh-live review)"),
        ]
    training = card.get("training_data")
    if isinstance(training, Mapping):
        training = training.get("description", "")
    thresholds = card.get("thresholds") or {}
    rows = [
        ("Model", f"{card.get('name')} {card.get('version')}"),
        ("Created", str(card.get("created", ""))),
        ("Intended use", str(card.get("intended_use", INTENDED_USE))),
        ("Training data", str(training or "")),
        ("Thresholds", ", ".join(f"{k} {_num(v):.2f}" for k, v in thresholds.items())),
        ("SHA-256 (model.onnx)", str(card.get("sha256", {}).get(ONNX_FILE, ""))),
    ]
    metrics = _flat_metrics(card.get("metrics"))
    if metrics:
        rows.append(("Metrics", "; ".join(metrics[:8])))
    refs = card.get("references") or []
    if refs and isinstance(refs[0], Mapping):
        rows.append(("Reference", str(refs[0].get("citation", ""))))
    return rows


def _flat_metrics(metrics: Any, prefix: str = "") -> list[str]:
    """Strings like "validation auc 0.912" for the numeric leaves of a metrics dict."""
    out: list[str] = []
    if not isinstance(metrics, Mapping):
        return out
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)) and math.isfinite(value):
            out.append(f"{name} {value:.3g}")
        elif isinstance(value, Mapping) and "value" in value and not prefix.count(" ") > 1:
            if isinstance(value["value"], (int, float)):
                out.append(f"{name} {value['value']:.3g}")
        elif isinstance(value, Mapping) and prefix.count(" ") < 2:
            out += _flat_metrics(value, name + " ")
    return out
