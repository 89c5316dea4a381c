"""Dataset writer: format, reproducibility independent of worker count."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from pivh_live.errors import ConfigError
from pivh_live.media import read_frames
from pivh_live.phantom.writer import LABEL_HEADER, case_spec, write_dataset


def _write(out: Path, workers: int) -> Path:
    # Lossless: decoded frames are the rendered frames, so the comparison is exact
    # (lossy x264 output is not guaranteed bit-identical from process to process).
    return write_dataset(
        out, n_cases=2, seed=7, seconds=0.4, fps=10.0, workers=workers, codec="ffv1"
    )


@pytest.mark.slow
def test_same_seed_same_dataset(tmp_path: Path) -> None:
    a = _write(tmp_path / "a", workers=1)
    b = _write(tmp_path / "b", workers=2)
    assert (a / "labels.csv").read_bytes() == (b / "labels.csv").read_bytes()
    for cid in ("ph00000", "ph00001"):
        assert (a / f"{cid}.frames.csv").read_bytes() == (b / f"{cid}.frames.csv").read_bytes()
        assert (a / f"{cid}.masks.npz").read_bytes() == (b / f"{cid}.masks.npz").read_bytes()
        fa, _ = read_frames(a / f"{cid}.mkv")
        fb, _ = read_frames(b / f"{cid}.mkv")
        assert np.array_equal(fa, fb)


def test_dataset_format(tmp_path: Path) -> None:
    out = write_dataset(tmp_path / "d", n_cases=1, seed=3, seconds=0.3, fps=10.0, workers=1,
                        codec="ffv1")  # fmt: skip
    with open(out / "labels.csv", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == LABEL_HEADER
    cid, view, grade, _side, gl, gr, roi, exam = rows[1]
    assert cid == "ph00000" and view in ("coronal", "sagittal") and roi == ""
    assert int(grade) == max(int(gl), int(gr)) <= int(exam)
    spec = case_spec(3, 0, prevalence="balanced", n_frames=3, fps=10.0, screen=False)
    assert int(exam) == spec.clip_grade
    frames, _ = read_frames(out / f"{cid}.mkv")
    masks = np.load(out / f"{cid}.masks.npz")["masks"]
    assert masks.dtype == bool and masks.shape == frames.shape == (3, *frames.shape[1:])
    assert frames.shape[1] % 2 == 0 and frames.shape[2] % 2 == 0
    with open(out / f"{cid}.frames.csv", encoding="utf-8") as f:
        flines = list(csv.DictReader(f))
    assert [int(r["frame"]) for r in flines] == [0, 1, 2]
    for r, m in zip(flines, masks, strict=True):
        assert (int(r["visible_grade"]) > 0) == bool(m.any())
    # The clip grade is what the clip shows.
    assert int(grade) == max(0, *(int(r["visible_grade"]) for r in flines))
    meta = json.loads((out / "phantom.json").read_text())
    assert meta["seed"] == 3 and meta["args"]["codec"] == "ffv1"


def test_balanced_blocks_hold_each_grade_once() -> None:
    specs = [case_spec(11, i, prevalence="balanced", n_frames=2, fps=10.0, screen=False)
             for i in range(10)]  # fmt: skip
    grades = sorted(s.clip_grade for s in specs)
    assert grades == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    again = case_spec(11, 4, prevalence="balanced", n_frames=2, fps=10.0, screen=False)
    assert again == specs[4]


def test_bad_arguments_raise_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        write_dataset(tmp_path, n_cases=0, seed=1)
    with pytest.raises(ConfigError):
        write_dataset(tmp_path, n_cases=1, seed=1, prevalence="everyone")
