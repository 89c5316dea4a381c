"""Whole-dataset checks: labels.csv with each case's files, optionally decoded."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from pivh_live.dataset.common import (
    LABELS_FILE,
    _check_header,
    _read_csv,
    _summary,
)
from pivh_live.dataset.framelabels import _read_frames_csv
from pivh_live.dataset.labels import (
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    Case,
    Dataset,
    _check_case_id,
    _media_index,
    _parse_case,
    _roi_text,
)
from pivh_live.dataset.masks import _mask_problem, _npy_header
from pivh_live.errors import DatasetError, MediaError
from pivh_live.media import iter_frames

log = logging.getLogger(__name__)


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
