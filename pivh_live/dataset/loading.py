"""Loading one case's frames, per-frame labels and masks."""

from __future__ import annotations

import zipfile

import numpy as np

from pivh_live.dataset.common import _HINT, LABELS_FILE, _summary
from pivh_live.dataset.framelabels import FrameLabels, _read_frames_csv
from pivh_live.dataset.labels import Case, _roi_text
from pivh_live.dataset.masks import _mask_problem
from pivh_live.errors import DatasetError
from pivh_live.media import read_frames


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
