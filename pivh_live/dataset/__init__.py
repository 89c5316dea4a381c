"""Dataset format reader and validator; the format is specified in docs/dataset.md.

A dataset is a directory with ``labels.csv`` (one row per clip) and, per
clip, its media plus optional per-frame labels (``<case_id>.frames.csv``) and
lesion masks (``<case_id>.masks.npz``). Problems are collected, not raised one
at a time, so a user fixes a whole file in one pass.
"""

from __future__ import annotations

from pivh_live.dataset.common import (
    FRAMES_SUFFIX,
    LABELS_FILE,
    MASKS_SUFFIX,
    MAX_LISTED,
    META_FILE,
    read_dataset_meta,
)
from pivh_live.dataset.framelabels import (
    FRAME_OPTIONAL_COLUMNS,
    FRAME_REQUIRED_COLUMNS,
    FRAME_VIEWS,
    FrameLabels,
)
from pivh_live.dataset.labels import (
    DICOM_EXTENSION,
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    SIDES,
    SPLITS,
    VIDEO_EXTENSIONS,
    VIEWS,
    Case,
    Dataset,
)
from pivh_live.dataset.loading import load_frame_labels, load_frames, load_masks
from pivh_live.dataset.validate import read_dataset, validate_dataset

__all__ = [
    "DICOM_EXTENSION",
    "FRAMES_SUFFIX",
    "FRAME_OPTIONAL_COLUMNS",
    "FRAME_REQUIRED_COLUMNS",
    "FRAME_VIEWS",
    "LABELS_FILE",
    "MASKS_SUFFIX",
    "MAX_LISTED",
    "META_FILE",
    "OPTIONAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "SIDES",
    "SPLITS",
    "VIDEO_EXTENSIONS",
    "VIEWS",
    "Case",
    "Dataset",
    "FrameLabels",
    "load_frame_labels",
    "load_frames",
    "load_masks",
    "read_dataset",
    "read_dataset_meta",
    "validate_dataset",
]
