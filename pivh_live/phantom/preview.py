"""Contact sheet of a phantom dataset: one row per grade 0-IV, plus extras.

Each tile shows a frame where the clip's worst lesion is visible (any valid
frame for grade 0) with a small copy outlining the mask in red. The extra row
shows traps, a probe-lifted frame and, for screen captures, a whole screen.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pivh_live.errors import DatasetError
from pivh_live.frames import GRADE_NAMES, Roi

log = logging.getLogger(__name__)

TILE_W, TILE_H = 320, 240
PER_ROW = 5


@dataclass(frozen=True)
class _Item:
    case_id: str
    grade: int
    view: str
    frames: np.ndarray  # (T, H, W) full frames
    masks: np.ndarray  # (T, h, w)
    visible: np.ndarray  # (T,)
    roi: Roi
    traps: str = ""


def _fit(img: np.ndarray, w: int, h: int) -> np.ndarray:
    s = min(w / img.shape[1], h / img.shape[0])
    r = cv2.resize(img, (max(1, int(img.shape[1] * s)), max(1, int(img.shape[0] * s))),
                   interpolation=cv2.INTER_AREA)  # fmt: skip
    out = np.zeros((h, w, 3), dtype=np.uint8)
    y, x = (h - r.shape[0]) // 2, (w - r.shape[1]) // 2
    out[y : y + r.shape[0], x : x + r.shape[1]] = r if r.ndim == 3 else r[..., None]
    return out


def _tile(item: _Item, t: int, caption: str, whole: bool = False) -> np.ndarray:
    full = item.frames[t]
    region = full if whole else item.roi.crop(full)
    big = _fit(region, TILE_W, TILE_H)
    small = cv2.cvtColor(region, cv2.COLOR_GRAY2BGR)
    if not whole and item.masks[t].any():
        cnt, _ = cv2.findContours(item.masks[t].astype(np.uint8), cv2.RETR_EXTERNAL,
                                  cv2.CHAIN_APPROX_NONE)  # fmt: skip
        cv2.drawContours(small, cnt, -1, (0, 0, 255), max(1, region.shape[1] // 300))
    small = _fit(small, TILE_W // 2, TILE_H // 2)
    tile = np.zeros((TILE_H + 22, TILE_W + TILE_W // 2 + 6, 3), dtype=np.uint8)
    tile[:TILE_H, :TILE_W] = big
    tile[: TILE_H // 2, TILE_W + 6 :] = small
    cv2.putText(tile, caption, (4, TILE_H + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1,
                cv2.LINE_AA)  # fmt: skip
    return tile


def _pick(item: _Item, rng: np.random.Generator) -> int:
    if item.grade > 0:
        hits = np.flatnonzero(item.visible == item.grade)
        if len(hits):
            areas = item.masks[hits].reshape(len(hits), -1).sum(1)
            return int(hits[int(np.argmax(areas))])
    valid = np.flatnonzero(item.visible >= 0)
    return int(rng.choice(valid)) if len(valid) else 0


def _label_row(text: str, width: int) -> np.ndarray:
    bar = np.full((30, width, 3), 40, dtype=np.uint8)
    cv2.putText(bar, text, (8, 21), cv2.FONT_HERSHEY_SIMPLEX, 0.65, (255, 255, 255), 1, cv2.LINE_AA)
    return bar


def _items_from_dir(root: Path) -> tuple[list[_Item], dict[int, int]]:
    """Items for the clips the sheet shows (only those are decoded) and clips per grade."""
    from pivh_live.media import read_frames

    labels = root / "labels.csv"
    if not labels.is_file():
        raise DatasetError(f"{labels} not found; write a dataset with `pivh-live phantom` first")
    with open(labels, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    counts = {g: sum(int(r["clip_grade"]) == g for r in rows) for g in range(5)}
    vis = {}
    for row in rows:
        with open(root / f"{row['case_id']}.frames.csv", encoding="utf-8") as f:
            vis[row["case_id"]] = np.array([int(r["visible_grade"]) for r in csv.DictReader(f)])
    wanted: list[dict] = []
    for g in range(5):
        wanted += [r for r in rows if int(r["clip_grade"]) == g][:PER_ROW]
    wanted += [r for r in rows if (vis[r["case_id"]] < 0).any() and r not in wanted][:2]
    wanted += [r for r in rows if r.get("roi") and r not in wanted][:1]
    items = []
    for row in wanted:
        cid = row["case_id"]
        media = next(iter(sorted(root.glob(f"{cid}.m[pk][4v]"))), None)
        if media is None:
            continue
        frames, _ = read_frames(media)
        masks = np.load(root / f"{cid}.masks.npz")["masks"]
        roi = (
            Roi(*map(int, row["roi"].split(";")))
            if row.get("roi")
            else Roi(0, 0, frames.shape[2], frames.shape[1])
        )
        items.append(_Item(cid, int(row["clip_grade"]), row["view"], frames, masks, vis[cid], roi))
    return items, counts


def _items_from_clips(clips: Sequence) -> list[_Item]:
    return [
        _Item(c.spec.case_id, c.clip_grade, c.spec.view, c.frames, c.masks,
              np.array([lab.visible_grade for lab in c.labels]), c.roi, ",".join(c.spec.traps))
        for c in clips
    ]  # fmt: skip


def write_preview(source: str | Path | Sequence, path: str | Path, seed: int = 0) -> Path:
    """Write the contact sheet PNG for a dataset directory or a list of ``Clip``s."""
    if isinstance(source, (str, Path)):
        items, counts = _items_from_dir(Path(source))
    else:
        items = _items_from_clips(source)
        counts = {g: sum(it.grade == g for it in items) for g in range(5)}
    rng = np.random.default_rng(seed)
    tile_w = TILE_W + TILE_W // 2 + 6
    width = PER_ROW * (tile_w + 6)
    blocks = []
    for g in range(5):
        chosen = [it for it in items if it.grade == g][:PER_ROW]
        blocks.append(_label_row(f"Grade {GRADE_NAMES[g]}  ({counts[g]} clips)", width))
        tiles = [
            _tile(it, t := _pick(it, rng), f"{it.case_id} {it.view} f{t} vis {it.visible[t]}")
            for it in chosen
        ]
        blocks.append(_row(tiles, width))
    extras = []
    for it in items:
        blank = np.flatnonzero(it.visible < 0)
        if len(blank) and len(extras) < 2:
            extras.append(_tile(it, int(blank[0]), f"{it.case_id} probe lifted / off head"))
    screen = [it for it in items if it.roi.w < it.frames.shape[2] or it.roi.h < it.frames.shape[1]]
    if screen:
        extras.append(
            _tile(screen[0], _pick(screen[0], rng), f"{screen[0].case_id} full screen", True)
        )
    if extras:
        blocks.append(_label_row("Extras: blank frames, screen capture", width))
        blocks.append(_row(extras, width))
    sheet = np.vstack(blocks)
    path = Path(path)
    cv2.imwrite(str(path), sheet)
    log.info("preview written to %s", path)
    return path


def _row(tiles: list[np.ndarray], width: int) -> np.ndarray:
    row = np.zeros((TILE_H + 28, width, 3), dtype=np.uint8)
    x = 3
    for t in tiles:
        row[3 : 3 + t.shape[0], x : x + t.shape[1]] = t
        x += t.shape[1] + 6
    return row
