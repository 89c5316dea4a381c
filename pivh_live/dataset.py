"""Dataset format reader and validator; the format is specified in docs/dataset.md.

A dataset is a directory with ``labels.csv`` (one row per clip) and, per
clip, its media plus optional per-frame labels (``<case_id>.frames.csv``) and
lesion masks (``<case_id>.masks.npz``). Problems are collected, not raised one
at a time, so a user fixes a whole file in one pass.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pivh_live.errors import DatasetError, MediaError
from pivh_live.frames import Roi
from pivh_live.media import iter_frames, read_frames

log = logging.getLogger(__name__)

LABELS_FILE = "labels.csv"
FRAMES_SUFFIX = ".frames.csv"
MASKS_SUFFIX = ".masks.npz"
VIEWS = ("coronal", "sagittal", "mixed")
FRAME_VIEWS = (*VIEWS, "none")
SIDES = ("left", "right", "bilateral", "none")
SPLITS = ("train", "val", "test")
REQUIRED_COLUMNS = ("case_id", "view", "clip_grade")
OPTIONAL_COLUMNS = ("side", "grade_left", "grade_right", "roi", "split")
FRAME_REQUIRED_COLUMNS = ("frame", "visible_grade")
FRAME_OPTIONAL_COLUMNS = ("valid", "grade_left", "grade_right", "view", "angle_deg")
# Extensions tried for a case's video; PyAV decodes far more, these are the usual ones.
VIDEO_EXTENSIONS = frozenset(
    {
        *("mp4", "m4v", "mkv", "webm", "avi", "mov", "qt", "mpg", "mpeg", "m2v", "ts", "m2ts"),
        *("mts", "wmv", "asf", "flv", "ogv", "ogg", "3gp", "mxf", "dv", "y4m", "nut", "h264"),
        *("264", "h265", "hevc"),
    }
)
DICOM_EXTENSION = "dcm"
MAX_LISTED = 10
_CASE_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,199}$")
_INT = re.compile(r"^[+-]?\d{1,9}$")  # bounded: int() of huge digit strings raises
_TRUE, _FALSE = ("1", "true"), ("0", "false")
_HINT = "see docs/dataset.md"


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


def read_dataset(root: str | Path) -> Dataset:
    """Read and check ``root``; raise ``DatasetError`` listing the problems found."""
    root = Path(root)
    problems: list[str] = []
    cases = _scan(root, problems)
    if problems:
        raise DatasetError(_summary(root, problems))
    return Dataset(root, tuple(c for c, _ in cases))


def validate_dataset(root: str | Path, decode: bool = False) -> list[str]:
    """All problems in ``root`` (empty list: valid).

    With ``decode`` every media file is decoded to check that it is readable,
    that the roi fits its frames and that frames.csv and masks match its
    frame count.
    """
    root = Path(root)
    problems: list[str] = []
    cases = _scan(root, problems)
    if decode:
        for case, line in cases:
            _check_decoded(case, line, problems)
    return problems


def load_frame_labels(case: Case) -> FrameLabels | None:
    """The case's frames.csv, or None when it has none."""
    if case.frames_csv is None:
        return None
    problems: list[str] = []
    labels = _read_frames_csv(case.frames_csv, problems)
    if labels is None or problems:
        raise DatasetError(_summary(case.frames_csv, problems))
    return labels


def load_masks(case: Case) -> np.ndarray | None:
    """Lesion masks, bool (T, H, W) in the roi's pixel grid, or None when absent."""
    if case.masks_path is None:
        return None
    path = case.masks_path
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "masks" not in npz.files:
                raise DatasetError(f"{path.name} has no array 'masks'; {_HINT}")
            masks = npz["masks"]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DatasetError(f"cannot read {path.name} ({exc}); rewrite it with np.savez") from exc
    problem = _mask_problem(path.name, masks.shape, masks.dtype, case.roi)
    if problem:
        raise DatasetError(f"{problem}; {_HINT}")
    return masks.astype(bool, copy=False)


def load_frames(case: Case, max_frames: int | None = None) -> tuple[np.ndarray, float]:
    """Decoded frames, gray uint8 (T, H, W) cropped to the case's roi, and fps."""
    frames, fps = read_frames(case.media, max_frames)
    roi = case.roi
    if roi is None:
        return frames, fps
    height, width = frames.shape[1:]
    if roi.x + roi.w > width or roi.y + roi.h > height:
        raise DatasetError(
            f"case '{case.case_id}': roi {_roi_text(roi)} lies outside the {width}x{height} "
            f"frames of {case.media.name}; fix the roi column of {LABELS_FILE}"
        )
    return np.stack([roi.crop(f) for f in frames]), fps


# --- scanning -------------------------------------------------------------------


def _summary(where: Path, problems: list[str]) -> str:
    listed = "; ".join(problems[:MAX_LISTED])
    more = len(problems) - MAX_LISTED
    rest = f"; and {more} more (pivh-live check-data lists all)" if more > 0 else ""
    return f"{where}: {len(problems)} problem(s): {listed}{rest}; {_HINT}"


def _scan(root: Path, problems: list[str]) -> list[tuple[Case, int]]:
    """Parse labels.csv and find each case's files; returns cases with their line."""
    labels = root / LABELS_FILE
    if not root.is_dir():
        problems.append(f"{root} is not a directory; give the dataset directory")
        return []
    if not labels.is_file():
        problems.append(
            f"{LABELS_FILE} is missing in {root}; create it with the columns "
            "case_id,view,clip_grade"
        )
        return []
    rows = _read_csv(labels, problems)
    if rows is None:
        return []
    header, body = rows
    if not _check_header(LABELS_FILE, header, REQUIRED_COLUMNS, OPTIONAL_COLUMNS, problems):
        return []
    if not body:
        problems.append(f"{LABELS_FILE} has a header but no cases")
        return []
    try:
        entries = _media_index(root)
    except OSError as exc:
        problems.append(f"cannot list {root}: {exc.strerror}; check its permissions")
        return []
    cases: list[tuple[Case, int]] = []
    first_line: dict[str, tuple[str, int]] = {}
    for line, row in body:
        where = f"{LABELS_FILE} line {line}"
        if len(row) != len(header):
            problems.append(f"{where}: {len(row)} fields but the header has {len(header)}")
            continue
        values = dict(zip(header, row, strict=True))
        if not _check_case_id(values["case_id"], where, first_line, problems):
            continue
        first_line[values["case_id"].lower()] = (values["case_id"], line)
        case = _parse_case(root, values, where, entries, problems)
        if case is None:
            continue
        _check_case_files(case, line, problems)
        cases.append((case, line))
    return cases


def _read_csv(
    path: Path, problems: list[str]
) -> tuple[list[str], list[tuple[int, list[str]]]] | None:
    """Header (lower-cased) and non-blank rows with their 1-based line numbers."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                problems.append(f"{path.name} is empty; its first line must be the header")
                return None
            body = []
            for row in reader:
                if any(cell.strip() for cell in row):
                    body.append((reader.line_num, [cell.strip() for cell in row]))
    except UnicodeDecodeError:
        problems.append(f"{path.name} is not UTF-8 text; save it as CSV UTF-8")
        return None
    except csv.Error as exc:
        problems.append(f"{path.name} line {reader.line_num}: {exc}")
        return None
    except OSError as exc:
        problems.append(f"cannot read {path.name}: {exc.strerror}")
        return None
    return [h.strip().lower() for h in header], body


def _check_header(
    name: str,
    header: list[str],
    required: tuple[str, ...],
    optional: tuple[str, ...],
    problems: list[str],
) -> bool:
    ok = True
    for column in sorted({h for h in header if header.count(h) > 1 and h}):
        problems.append(f"{name} line 1: column '{column}' appears more than once")
        ok = False
    missing = [c for c in required if c not in header]
    if missing:
        problems.append(
            f"{name} line 1: missing required column(s) {','.join(missing)} "
            f"(header must include {','.join(required)})"
        )
        ok = False
    unknown = [h or "(unnamed)" for h in header if h not in required + optional]
    if unknown:
        log.warning("%s: ignoring unknown column(s) %s", name, ", ".join(unknown))
    return ok


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
    if clip_grade is not None:
        _check_sides(clip_grade, side, left, right, where, problems)
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
    )


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


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


# --- per-case files ---------------------------------------------------------------


def _check_case_files(case: Case, line: int, problems: list[str]) -> None:
    n_frames = None
    if case.frames_csv is not None:
        labels = _read_frames_csv(case.frames_csv, problems)
        if labels is not None:
            n_frames = len(labels)
            worst = int(labels.visible_grade.max(initial=-1))
            if worst > case.clip_grade:
                at = int(np.argmax(labels.visible_grade))
                problems.append(
                    f"{case.frames_csv.name} frame {at}: visible_grade {worst} "
                    f"exceeds clip_grade {case.clip_grade} ({LABELS_FILE} line "
                    f"{line})"
                )
    if case.masks_path is not None:
        header = _npy_header(case.masks_path, problems)
        if header is not None:
            problem = _mask_problem(case.masks_path.name, *header, case.roi, n_frames)
            if problem:
                problems.append(problem)


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


def _npy_header(path: Path, problems: list[str]) -> tuple[tuple[int, ...], np.dtype] | None:
    """Shape and dtype of ``masks`` in an npz without decompressing the array."""
    try:
        with zipfile.ZipFile(path) as zf:
            if "masks.npy" not in zf.namelist():
                problems.append(f"{path.name} has no array 'masks' (np.savez(path, masks=...))")
                return None
            with zf.open("masks.npy") as fh:
                version = np.lib.format.read_magic(fh)
                read = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                shape, _, dtype = read(fh)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        problems.append(f"cannot read {path.name} ({exc}); rewrite it with np.savez")
        return None
    return shape, dtype


def _mask_problem(
    name: str,
    shape: tuple[int, ...],
    dtype: np.dtype,
    roi: Roi | None,
    n_frames: int | None = None,
    frame_hw: tuple[int, int] | None = None,
) -> str | None:
    if dtype != np.bool_ and dtype.kind not in "iu":
        return f"{name}: masks have dtype {dtype}; use bool"
    if len(shape) != 3:
        return f"{name}: masks have shape {shape}; expected (frames, height, width)"
    hw = (roi.h, roi.w) if roi is not None else frame_hw
    if hw is not None and tuple(shape[1:]) != hw:
        grid = "roi" if roi is not None else "frame"
        return f"{name}: masks are {shape[2]}x{shape[1]} but the {grid} is {hw[1]}x{hw[0]}"
    if n_frames is not None and shape[0] != n_frames:
        return f"{name}: {shape[0]} masks but the clip has {n_frames} frames"
    return None


def _check_decoded(case: Case, line: int, problems: list[str]) -> None:
    where = f"{LABELS_FILE} line {line}"
    n, shape = 0, None
    try:
        for frame in iter_frames(case.media):
            n, shape = n + 1, frame.image.shape
    except MediaError as exc:
        problems.append(f"case '{case.case_id}': {exc}")
        return
    if shape is None:
        problems.append(f"case '{case.case_id}': {case.media.name} has no frames")
        return
    height, width = shape
    roi = case.roi
    if roi is not None and (roi.x + roi.w > width or roi.y + roi.h > height):
        problems.append(
            f"{where}: roi {_roi_text(roi)} lies outside the {width}x{height} "
            f"frames of {case.media.name}"
        )
        return
    if case.frames_csv is not None:
        labels = _read_frames_csv(case.frames_csv, [])
        if labels is not None and len(labels) != n:
            problems.append(
                f"{case.frames_csv.name}: {len(labels)} frames listed but {case.media.name} has {n}"
            )
    if case.masks_path is not None:
        header = _npy_header(case.masks_path, [])
        # Problems visible without decoding were reported by _scan already.
        if header is not None and _mask_problem(case.masks_path.name, *header, roi) is None:
            problem = _mask_problem(case.masks_path.name, *header, roi, n, (height, width))
            if problem:
                problems.append(problem)
    log.info("checked %s: %d frames of %dx%d", case.case_id, n, width, height)
