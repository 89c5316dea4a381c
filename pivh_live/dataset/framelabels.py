"""Per-frame labels: ``<case_id>.frames.csv``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pivh_live.dataset.common import _INT, MAX_LISTED, _check_header, _read_csv, _short
from pivh_live.dataset.labels import VIEWS

FRAME_VIEWS = (*VIEWS, "none")
FRAME_REQUIRED_COLUMNS = ("frame", "visible_grade")
FRAME_OPTIONAL_COLUMNS = ("valid", "grade_left", "grade_right", "view", "angle_deg")
_TRUE, _FALSE = ("1", "true"), ("0", "false")


@dataclass(frozen=True, eq=False)
class FrameLabels:
    """Per-frame labels of one clip; every array has one entry per frame.

    ``visible_grade`` is -1 where the frame shows no brain, else the worst
    Papile grade (0-4) visible in it. ``valid`` defaults to
    ``visible_grade >= 0``. Optional columns are None when absent.
    """

    frame: np.ndarray
    visible_grade: np.ndarray
    valid: np.ndarray
    grade_left: np.ndarray | None = None
    grade_right: np.ndarray | None = None
    view: tuple[str, ...] | None = None
    angle_deg: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.frame)


def _read_frames_csv(path: Path, problems: list[str]) -> FrameLabels | None:
    rows = _read_csv(path, problems)
    if rows is None:
        return None
    header, body = rows
    if not _check_header(
        path.name, header, FRAME_REQUIRED_COLUMNS, FRAME_OPTIONAL_COLUMNS, problems
    ):
        return None
    if not body:
        problems.append(f"{path.name} has a header but no frames")
        return None
    n_before = len(problems)
    columns: dict[str, list] = {
        c: [] for c in FRAME_REQUIRED_COLUMNS + FRAME_OPTIONAL_COLUMNS if c in header
    }
    for line, row in body:
        where = f"{path.name} line {line}"
        if len(row) != len(header):
            problems.append(f"{where}: {len(row)} fields but the header has {len(header)}")
            continue
        values = dict(zip(header, row, strict=True))
        expected = len(columns["frame"])
        if values["frame"] != str(expected):
            shown = _short(values["frame"])
            problems.append(
                f"{where}: frame '{shown}' where {expected} was expected; frames "
                "must be 0, 1, 2, ... in order without gaps"
            )
            break  # every later row would repeat the complaint
        parsed = _parse_frame_row(values, where, problems)
        if parsed is None:
            continue
        for column in columns:
            columns[column].append(parsed[column])
        if len(problems) - n_before >= MAX_LISTED:
            break  # one broken export would otherwise list every frame
    if len(problems) > n_before:
        return None
    visible = np.asarray(columns["visible_grade"], dtype=np.int64)
    valid = np.asarray(columns["valid"], dtype=bool) if "valid" in columns else visible >= 0
    bad = np.flatnonzero(valid & (visible < 0))
    if bad.size:
        problems.append(f"{path.name} frame {bad[0]}: valid but visible_grade -1 (no image)")
        return None

    def optional(column: str, dtype: type) -> np.ndarray | None:
        return np.asarray(columns[column], dtype=dtype) if column in columns else None

    return FrameLabels(
        frame=np.asarray(columns["frame"], dtype=np.int64),
        visible_grade=visible,
        valid=valid,
        grade_left=optional("grade_left", np.int64),
        grade_right=optional("grade_right", np.int64),
        view=tuple(columns["view"]) if "view" in columns else None,
        angle_deg=optional("angle_deg", np.float64),
    )


def _parse_frame_row(
    values: dict[str, str], where: str, problems: list[str]
) -> dict[str, object] | None:
    n_before = len(problems)
    out: dict[str, object] = {"frame": int(values["frame"])}
    for column in ("visible_grade", "grade_left", "grade_right"):
        if column in values:
            value = values[column]
            if _INT.match(value) and -1 <= int(value) <= 4:
                out[column] = int(value)
            else:
                problems.append(
                    f"{where}: {column} '{_short(value)}' is not -1 (no image) or an integer 0-4"
                )
    if "valid" in values:
        value = values["valid"].lower()
        if value in _TRUE + _FALSE:
            out["valid"] = value in _TRUE
        else:
            problems.append(f"{where}: valid '{_short(value)}' is not 0, 1, true or false")
    if "view" in values:
        value = values["view"].lower()
        if value and value not in FRAME_VIEWS:
            problems.append(
                f"{where}: view '{_short(value)}' is not one of {'|'.join(FRAME_VIEWS)} or empty"
            )
        out["view"] = value
    if "angle_deg" in values:
        try:
            angle = float(values["angle_deg"])
        except ValueError:
            angle = math.nan
        if not math.isfinite(angle):
            problems.append(f"{where}: angle_deg '{_short(values['angle_deg'])}' is not a number")
        out["angle_deg"] = angle
    return out if len(problems) == n_before else None
