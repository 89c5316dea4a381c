"""The clips that cost the most: the largest grade disagreements, with the frame behind each.

A metric says how often the model is wrong; a reviewer needs to see where.
For the clips whose displayed clip grade differs from the label, this picks
those with the largest quadratic kappa weight ``(label - shown)^2 / 16``
(a normal clip shown as grade IV costs 16 times a I shown as II), most
confident first, and shows one frame of each:

- an over-call (shown above the label): the frame that drove the grade, the
  smoother's ``best_evidence`` (the frame with the highest own P(grade >=
  shown) among those that raised the display to that grade and those shown
  at it; docs/smoothing.md), the frame the live review keeps for it;
- an under-call: the frame where the labelled lesion is largest (the lesion
  masks), else the middle frame labelled with the clip's grade, else the
  valid frame the model came closest on (highest own P(grade >= label)).

Images are the case's image region as stored (the roi crop, so burned-in
screen text is never shown), the lesion mask outlined in green where the
dataset has masks. They are patient images when the dataset is real, so the
directory and files are private to the user (0700 / 0600) like recordings.
"""

from __future__ import annotations

import html
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pivh_live.errors import DatasetError, PivhError
from pivh_live.frames import GRADE_NAMES

log = logging.getLogger(__name__)

GALLERY_DIR = "disagreements"
DEFAULT_LIMIT = 12
THUMB_HEIGHT = 240


@dataclass(frozen=True)
class Disagreement:
    """One clip whose displayed grade differs from its label, and the frame shown for it."""

    case_id: str
    label: int
    shown: int
    weight: float  # quadratic kappa weight (label - shown)^2 / 16
    p_pivh: float
    p_severe: float
    frame: int  # frame index in the clip (decoding order)
    t_s: float
    why: str  # "drove the grade" | "largest lesion" | "labelled frame" | "closest call"
    frame_label: int | None  # the frame's labelled visible grade (None: unlabelled, -1 no brain)
    p_frame: float  # the model's own P(grade >= max(label, shown)) on that frame
    image: str | None = None  # path under the report directory, None when not written

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _confidence(label: int, shown: int, p_pivh: float, p_severe: float) -> float:
    """How sure the model was of its wrong call (higher first)."""
    if shown > label:
        return p_severe if shown >= 3 else p_pivh
    return 1.0 - (p_severe if label >= 3 else p_pivh)


def _under_call_frame(
    labels: np.ndarray, p_ge: np.ndarray, valid: np.ndarray, label: int, masks: np.ndarray | None
) -> tuple[int, str]:
    """Row offset (in the clip) of the frame to show for a missed grade, and why."""
    at_grade = np.flatnonzero(labels == label)
    if masks is not None and at_grade.size:
        frames = np.minimum(at_grade, len(masks) - 1)
        area = masks[frames].reshape(len(frames), -1).sum(axis=1)
        if area.max() > 0:
            return int(at_grade[int(np.argmax(area))]), "largest lesion"
    if at_grade.size:
        return int(at_grade[len(at_grade) // 2]), "labelled frame"
    seen = np.flatnonzero(valid) if valid.any() else np.arange(len(p_ge))
    return int(seen[int(np.argmax(p_ge[seen]))]), "closest call"


def find_disagreements(
    cases: list[Any],
    pred: Any,
    visible_grade: np.ndarray,
    clips: list[Any],
    limit: int = DEFAULT_LIMIT,
    *,
    valid_threshold: float = 0.5,
    load_masks: bool = True,
) -> list[Disagreement]:
    """The ``limit`` assessable clips with the largest weighted disagreement, costliest first."""
    from pivh_live.dataset import load_masks as read_masks

    ranked = []
    for ci, (case, r) in enumerate(zip(cases, clips, strict=True)):
        label, shown = int(case.clip_grade), int(r.clip_grade)
        if r.assessable and label != shown:
            conf = _confidence(label, shown, float(r.p_pivh), float(r.p_severe))
            ranked.append(((label - shown) ** 2, conf, ci))
    ranked.sort(key=lambda x: (-x[0], -x[1], x[2]))
    out = []
    for cost, _, ci in ranked[: max(limit, 0)]:
        case, r = cases[ci], clips[ci]
        label, shown = int(case.clip_grade), int(r.clip_grade)
        rows = np.flatnonzero(pred.case_index == ci)
        level = max(label, shown)
        p_ge = pred.grade_probs[rows, level:].sum(axis=1)
        best = r.summary.best_evidence
        if shown > label and best is not None and 0 <= best.seq < len(rows):
            at, why = int(best.seq), "drove the grade"
        else:
            masks = None
            if load_masks:
                try:
                    masks = read_masks(case)
                except DatasetError as exc:
                    log.warning("case %s: masks not shown (%s)", case.case_id, exc)
            valid = pred.p_valid[rows] >= valid_threshold
            at, why = _under_call_frame(visible_grade[rows], p_ge, valid, label, masks)
        frame_label = int(visible_grade[rows[at]])
        out.append(
            Disagreement(
                case_id=case.case_id,
                label=label,
                shown=shown,
                weight=cost / 16.0,
                p_pivh=round(float(r.p_pivh), 5),
                p_severe=round(float(r.p_severe), 5),
                frame=int(pred.frame[rows[at]]),
                t_s=round(float(pred.t_s[rows[at]]), 3),
                why=why,
                frame_label=None if frame_label == -2 else frame_label,
                p_frame=round(float(p_ge[at]), 5),
            )
        )
    return out


def _thumbnail(case: Any, frame: int) -> np.ndarray:
    """The frame's image region (BGR with the lesion mask outlined), THUMB_HEIGHT rows high."""
    import cv2

    from pivh_live.dataset import load_frames, load_masks

    frames, _ = load_frames(case, max_frames=frame + 1)
    if len(frames) <= frame:
        raise DatasetError(f"case '{case.case_id}': frame {frame} could not be decoded again")
    img = frames[frame]  # gray, unless a lesion outline is drawn (3x smaller PNGs)
    masks = load_masks(case)
    if masks is not None and frame < len(masks) and masks[frame].shape == img.shape:
        contours, _ = cv2.findContours(
            masks[frame].astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
        )
        if contours:
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
            cv2.drawContours(img, contours, -1, (0, 200, 0), 1)
    h, w = img.shape[:2]
    width = max(1, round(w * THUMB_HEIGHT / max(h, 1)))
    return cv2.resize(img, (width, THUMB_HEIGHT), interpolation=cv2.INTER_AREA)


def clear_gallery(out: Path) -> None:
    """Remove the images an earlier run left in OUT/disagreements/ (and the folder, if empty)."""
    folder = out / GALLERY_DIR
    if not folder.is_dir():
        return
    for old in folder.glob("[0-9][0-9]-*.png"):
        old.unlink(missing_ok=True)
    if not any(folder.iterdir()):
        folder.rmdir()


def write_gallery(out: Path, cases: list[Any], items: list[Disagreement]) -> list[Disagreement]:
    """PNG of each item's frame into OUT/disagreements/ (private); items with ``image`` set.

    An image that cannot be made (the media no longer decodes, a full disk)
    is logged and left out; the evaluation's other outputs are still written.
    """
    import dataclasses

    import cv2

    from pivh_live.recording.files import private_dir, write_private_bytes

    if not items:
        return items
    folder = private_dir(out / GALLERY_DIR)
    by_id = {c.case_id: c for c in cases}
    written = []
    for k, item in enumerate(items, 1):
        name = f"{k:02d}-{item.case_id.replace('/', '_')}.png"
        try:
            img = _thumbnail(by_id[item.case_id], item.frame)
            ok, png = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 9])
            if not ok:
                raise OSError("PNG encoding failed")
            write_private_bytes(folder / name, png.tobytes())
        except (PivhError, OSError, cv2.error) as exc:
            log.warning("disagreement %s: no image (%s)", item.case_id, exc)
            written.append(item)
            continue
        written.append(dataclasses.replace(item, image=f"{GALLERY_DIR}/{name}"))
    return written


def gallery_html(items: list[dict[str, Any]], images: dict[str, bytes]) -> str:
    """The report section: one captioned figure per disagreement (images as data URIs)."""
    import base64

    if not items:
        return ""
    figs = []
    for d in items:
        src = images.get(d.get("image") or "")
        pic = (
            f'<img alt="frame {d["frame"]}" src="data:image/png;base64,'
            f'{base64.b64encode(src).decode("ascii")}">'
            if src
            else "<p>(no image)</p>"
        )
        lab = "unlabelled" if d["frame_label"] is None else (
            "no brain" if d["frame_label"] < 0 else GRADE_NAMES[d["frame_label"]]
        )  # fmt: skip
        caption = (
            f"<b>{html.escape(d['case_id'])}</b>: label {GRADE_NAMES[d['label']]}, shown "
            f"{GRADE_NAMES[d['shown']]} (weight {d['weight']:.2f}; clip P(&ge;I) "
            f"{d['p_pivh']:.2f}, P(&ge;III) {d['p_severe']:.2f})<br>frame {d['frame']} at "
            f"{d['t_s']:.2f} s, {html.escape(d['why'])}; labelled {lab} there; the frame's own "
            f"P(&ge;{GRADE_NAMES[max(d['label'], d['shown'])]}) {d['p_frame']:.2f}"
        )
        figs.append(f"<figure>{pic}<figcaption>{caption}</figcaption></figure>")
    return (
        '<h2>Largest disagreements</h2><p class="note">The clips whose displayed grade '
        "costs the most kappa (weight (label - shown)<sup>2</sup>/16), most confident first, "
        "each with one frame: for an over-call the frame that drove the grade, for an "
        "under-call the labelled lesion (outlined in green where the dataset has masks). "
        "Files in <code>disagreements/</code>; they are images from the dataset.</p>"
        f'<div class="gallery">{"".join(figs)}</div>'
    )


__all__ = [
    "DEFAULT_LIMIT",
    "GALLERY_DIR",
    "Disagreement",
    "clear_gallery",
    "find_disagreements",
    "gallery_html",
    "write_gallery",
]
