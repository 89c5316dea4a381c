"""labels.csv rows: parsing and checking one case, and finding its media."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pivh_live.dataset.common import _INT, FRAMES_SUFFIX, MASKS_SUFFIX, _short
from pivh_live.frames import Roi

VIEWS = ("coronal", "sagittal", "mixed")
SIDES = ("left", "right", "bilateral", "none")
SPLITS = ("train", "val", "test")
REQUIRED_COLUMNS = ("case_id", "view", "clip_grade")
OPTIONAL_COLUMNS = ("side", "grade_left", "grade_right", "roi", "split", "exam_grade")
# Extensions tried for a case's video; PyAV decodes far more, these are the usual ones.
VIDEO_EXTENSIONS = frozenset(
    {
        *("mp4", "m4v", "mkv", "webm", "avi", "mov", "qt", "mpg", "mpeg", "m2v", "ts", "m2ts"),
        *("mts", "wmv", "asf", "flv", "ogv", "ogg", "3gp", "mxf", "dv", "y4m", "nut", "h264"),
        *("264", "h265", "hevc"),
    }
)
DICOM_EXTENSION = "dcm"
_CASE_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,199}$")


@dataclass(frozen=True)
class Case:
    """One clip: its labels.csv row and the paths of its files."""

    case_id: str
    view: str
    clip_grade: int
    side: str | None
    grade_left: int | None
    grade_right: int | None
    roi: Roi | None
    split: str | None
    media: Path
    frames_csv: Path | None
    masks_path: Path | None
    # The patient's exam grade where it is known and may be worse than what this
    # clip shows (informational: training and metrics use clip_grade).
    exam_grade: int | None = None


@dataclass(frozen=True)
class Dataset:
    root: Path
    cases: tuple[Case, ...]

    def __len__(self) -> int:
        return len(self.cases)

    def __iter__(self) -> Iterator[Case]:
        return iter(self.cases)

    def split(self, name: str) -> tuple[Case, ...]:
        """Cases whose ``split`` column is ``name`` (train, val or test)."""
        return tuple(c for c in self.cases if c.split == name)


def _media_index(root: Path) -> dict[str, list[str]]:
    """Names in ``root`` by the case id they could belong to (name without extension)."""
    index: dict[str, list[str]] = {}
    for entry in os.scandir(root):
        stem = entry.name
        if not entry.is_dir() and "." in entry.name:
            stem = entry.name.rsplit(".", 1)[0]
        index.setdefault(stem, []).append(entry.name)
    return index


def _find_media(root: Path, case_id: str, names: list[str]) -> tuple[list[str], list[str]]:
    """(media names, other names with an unrecognised extension) for ``case_id``."""
    media, other = [], []
    for name in names:
        path = root / name
        if name == case_id:
            (media if path.is_dir() else other).append(name)
            continue
        ext = name.rsplit(".", 1)[-1].lower()
        if path.is_file() and (ext in VIDEO_EXTENSIONS or ext == DICOM_EXTENSION):
            media.append(name)
        else:
            other.append(name)
    return sorted(media), sorted(other)


def _check_case_id(
    case_id: str, where: str, seen: dict[str, tuple[str, int]], problems: list[str]
) -> bool:
    """Safe as a file name (no path traversal) and unique, also on case-blind file systems."""
    if not _CASE_ID.match(case_id):
        problems.append(
            f"{where}: case_id '{_short(case_id)}' must be 1-200 of A-Z a-z 0-9 _ . - "
            "and not start with '.'"
        )
        return False
    if case_id.lower() not in seen:
        return True
    other, first = seen[case_id.lower()]
    problems.append(
        f"{where}: duplicate case_id '{case_id}' (first on line {first})"
        if other == case_id
        else f"{where}: case_id '{case_id}' differs from '{other}' (line {first}) only in "
        "upper/lower case; rename one"
    )
    return False


def _parse_case(
    root: Path,
    row: dict[str, str],
    where: str,
    entries: dict[str, list[str]],
    problems: list[str],
) -> Case | None:
    n_before = len(problems)
    case_id = row["case_id"]
    view = _choice(row, "view", VIEWS, where, problems, required=True)
    clip_grade = _grade(row, "clip_grade", where, problems, required=True)
    side = _choice(row, "side", SIDES, where, problems)
    left = _grade(row, "grade_left", where, problems)
    right = _grade(row, "grade_right", where, problems)
    roi = _parse_roi(row.get("roi", ""), where, problems)
    split = _choice(row, "split", SPLITS, where, problems)
    exam = _grade(row, "exam_grade", where, problems)
    if clip_grade is not None:
        _check_sides(clip_grade, side, left, right, where, problems)
        if exam is not None and exam < clip_grade:
            problems.append(f"{where}: exam_grade {exam} is below clip_grade {clip_grade}")
    media, other = _find_media(root, case_id, entries.get(case_id, []))
    if not media:
        hint = f" (found {', '.join(other)}: unrecognised extension)" if other else ""
        problems.append(
            f"{where}: no media for case '{case_id}'{hint}; add {case_id}.mp4 (or "
            f"another video), an image folder {case_id}/ or {case_id}.dcm"
        )
    elif len(media) > 1:
        problems.append(
            f"{where}: case '{case_id}' has {len(media)} media "
            f"({', '.join(media)}); keep exactly one"
        )
    if len(problems) > n_before or view is None or clip_grade is None:
        return None
    frames_csv = root / f"{case_id}{FRAMES_SUFFIX}"
    masks = root / f"{case_id}{MASKS_SUFFIX}"
    return Case(
        case_id,
        view,
        clip_grade,
        side,
        left,
        right,
        roi,
        split,
        root / media[0],
        frames_csv if frames_csv.is_file() else None,
        masks if masks.is_file() else None,
        exam,
    )


def _choice(
    row: dict[str, str],
    column: str,
    allowed: tuple[str, ...],
    where: str,
    problems: list[str],
    *,
    required: bool = False,
) -> str | None:
    value = row.get(column, "").lower()
    if not value and not required:
        return None
    if value not in allowed:
        problems.append(
            f"{where}: {column} '{_short(row.get(column, ''))}' is not one of {'|'.join(allowed)}"
        )
        return None
    return value


def _grade(
    row: dict[str, str], column: str, where: str, problems: list[str], *, required: bool = False
) -> int | None:
    value = row.get(column, "")
    if not value and not required:
        return None
    if not _INT.match(value) or not 0 <= int(value) <= 4:
        problems.append(f"{where}: {column} '{_short(value)}' is not an integer 0-4")
        return None
    return int(value)


def _parse_roi(value: str, where: str, problems: list[str]) -> Roi | None:
    if not value:
        return None
    parts = [p.strip() for p in value.split(";")]
    if len(parts) != 4 or not all(_INT.match(p) for p in parts):
        problems.append(f"{where}: roi '{_short(value)}' must be four integers x;y;w;h")
        return None
    x, y, w, h = (int(p) for p in parts)
    if x < 0 or y < 0 or w <= 0 or h <= 0:
        problems.append(f"{where}: roi '{value}' needs x, y >= 0 and w, h > 0")
        return None
    return Roi(x, y, w, h)


def _roi_text(roi: Roi) -> str:
    return f"{roi.x};{roi.y};{roi.w};{roi.h}"


def _check_sides(
    grade: int,
    side: str | None,
    left: int | None,
    right: int | None,
    where: str,
    problems: list[str],
) -> None:
    if left is not None and right is not None and max(left, right) != grade:
        problems.append(
            f"{where}: clip_grade {grade} is not the worse of grade_left {left} "
            f"and grade_right {right}"
        )
    for name, value in (("grade_left", left), ("grade_right", right)):
        if value is not None and value > grade:
            problems.append(f"{where}: {name} {value} exceeds clip_grade {grade}")
    if side is None:
        return
    if (side == "none") != (grade == 0):
        problems.append(
            f"{where}: side '{side}' does not fit clip_grade {grade} "
            "(side none means grade 0 and grade 0 means side none)"
        )
    elif (side == "left" and right) or (side == "right" and left):
        problems.append(f"{where}: side '{side}' but the other hemisphere has a grade above 0")
    elif side == "bilateral" and (left == 0 or right == 0):
        problems.append(f"{where}: side 'bilateral' but a hemisphere has grade 0")
