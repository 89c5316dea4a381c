"""The dataset format reader and validator (docs/dataset.md)."""

from __future__ import annotations

import logging
import re
import string
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, UltrasoundMultiFrameImageStorage, generate_uid

from pivh_live.dataset import (
    Case,
    Dataset,
    FrameLabels,
    load_frame_labels,
    load_frames,
    load_masks,
    read_dataset,
    validate_dataset,
)
from pivh_live.errors import DatasetError
from pivh_live.frames import Roi
from pivh_live.media import write_video

H, W, T = 48, 64, 5
HEADER = "case_id,view,clip_grade,side,grade_left,grade_right,roi,split"


def _frames(seed: int, n: int = T) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, H, W), dtype=np.uint8)


def _frames_csv(path: Path, grades: list[int], **extra: list[object]) -> None:
    columns = ["frame", "visible_grade", *extra]
    lines = [",".join(columns)]
    for i, g in enumerate(grades):
        lines.append(",".join([str(i), str(g), *(str(v[i]) for v in extra.values())]))
    path.write_text("\n".join(lines) + "\n")


def _write_dicom(path: Path, frames: np.ndarray) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.Rows, ds.Columns, ds.NumberOfFrames = H, W, len(frames)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.FrameTime = 40.0
    ds.PixelData = frames.tobytes()
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)


def _write(root: Path, labels: str) -> Path:
    (root / "labels.csv").write_text(labels)
    return root


@pytest.fixture
def good(tmp_path: Path) -> Path:
    """Four cases, one per media kind, with frames.csv and masks where it fits."""
    root = tmp_path / "data"
    root.mkdir()
    write_video(root / "c0.mkv", _frames(0), 25.0, codec="ffv1")
    _frames_csv(
        root / "c0.frames.csv",
        [-1, 0, 2, 3, 3],
        valid=[0, 1, 1, 1, "true"],
        grade_left=[-1, 0, 2, 3, 3],
        grade_right=[-1, 0, 0, 0, 0],
        view=["none", "coronal", "coronal", "coronal", "coronal"],
        angle_deg=[-30, -15, 0, 15.5, 30],
    )
    masks = np.zeros((T, 30, 40), bool)
    masks[3, 10:20, 5:15] = True
    np.savez_compressed(root / "c0.masks.npz", masks=masks)
    folder = root / "c.1"
    folder.mkdir()
    for i, image in enumerate(_frames(1)):
        Image.fromarray(image).save(folder / f"f{i}.png")
    write_video(root / "c2.mp4", _frames(2), 25.0)
    (root / "c2.notes.txt").write_text("ignored")
    _frames_csv(root / "c2.frames.csv", [0, 0, 1, 0, 0])
    _write_dicom(root / "c3.dcm", _frames(3))
    _write(
        root,
        f"{HEADER}\n"
        "c0,coronal,3,left,3,0,4;6;40;30,train\n"
        "c.1,sagittal,0,none,,,,val\n"
        "\n"
        "c2,mixed,1,right,0,1,,test\n"
        "c3,coronal,4,bilateral,4,2,,\n",
    )
    return root


def test_round_trip(good: Path) -> None:
    ds = read_dataset(good)
    assert isinstance(ds, Dataset) and ds.root == good and len(ds) == 4
    c0, c1, c2, c3 = ds.cases
    assert c0 == Case(
        "c0",
        "coronal",
        3,
        "left",
        3,
        0,
        Roi(4, 6, 40, 30),
        "train",
        good / "c0.mkv",
        good / "c0.frames.csv",
        good / "c0.masks.npz",
    )
    assert c1 == Case(
        "c.1", "sagittal", 0, "none", None, None, None, "val", good / "c.1", None, None
    )
    assert c2 == Case(
        "c2", "mixed", 1, "right", 0, 1, None, "test", good / "c2.mp4", good / "c2.frames.csv", None
    )
    assert c3 == Case(
        "c3", "coronal", 4, "bilateral", 4, 2, None, None, good / "c3.dcm", None, None
    )
    assert ds.split("val") == (c1,)
    assert validate_dataset(good) == [] and validate_dataset(good, decode=True) == []

    frames, fps = load_frames(c0)
    np.testing.assert_array_equal(frames, _frames(0)[:, 6:36, 4:44])
    assert fps == 25.0
    np.testing.assert_array_equal(load_frames(c1)[0], _frames(1))
    np.testing.assert_array_equal(load_frames(c3, max_frames=2)[0], _frames(3)[:2])
    masks = load_masks(c0)
    assert masks is not None and masks.dtype == bool and masks.shape == (T, 30, 40)
    assert masks.sum() == 100 and masks[3].sum() == 100
    assert load_masks(c1) is None and load_frame_labels(c1) is None

    labels = load_frame_labels(c0)
    assert isinstance(labels, FrameLabels) and len(labels) == T
    np.testing.assert_array_equal(labels.frame, np.arange(T))
    np.testing.assert_array_equal(labels.visible_grade, [-1, 0, 2, 3, 3])
    np.testing.assert_array_equal(labels.valid, [False, True, True, True, True])
    np.testing.assert_array_equal(labels.grade_left, [-1, 0, 2, 3, 3])
    np.testing.assert_array_equal(labels.grade_right, [-1, 0, 0, 0, 0])
    assert labels.view == ("none", "coronal", "coronal", "coronal", "coronal")
    np.testing.assert_allclose(labels.angle_deg, [-30, -15, 0, 15.5, 30])
    labels2 = load_frame_labels(c2)
    assert labels2 is not None and labels2.grade_left is None and labels2.view is None
    np.testing.assert_array_equal(labels2.valid, [True] * T)  # default: visible_grade >= 0


def test_unknown_columns_are_ignored_with_warning(
    good: Path, caplog: pytest.LogCaptureFixture
) -> None:
    text = (good / "labels.csv").read_text().splitlines()
    text[0] += ",operator"
    text = [text[0]] + [line + ",x" if line else line for line in text[1:]]
    _write(good, "\n".join(text) + "\n")
    with caplog.at_level(logging.WARNING, logger="pivh_live.dataset"):
        assert len(read_dataset(good)) == 4
    assert "operator" in caplog.text


def _replace_row(root: Path, case_id: str, new_row: str) -> None:
    lines = (root / "labels.csv").read_text().splitlines()
    lines = [new_row if line.split(",")[0] == case_id else line for line in lines]
    _write(root, "\n".join(lines) + "\n")


# (labels.csv row replacing case c2 on line 5, expected message)
BAD_ROWS = [
    ("c2,mixed,x,right,0,1,,test", "labels.csv line 5: clip_grade 'x' is not an integer 0-4"),
    ("c2,mixed,5,,,,,", "labels.csv line 5: clip_grade '5' is not an integer 0-4"),
    ("c2,mixed,-1,,,,,", "labels.csv line 5: clip_grade '-1' is not an integer 0-4"),
    ("c2,mixed,1,right,0,7,,", "labels.csv line 5: grade_right '7' is not an integer 0-4"),
    ("c2,axial,1,,,,,", "labels.csv line 5: view 'axial' is not one of coronal|sagittal|mixed"),
    ("c2,mixed,1,up,,,,", "labels.csv line 5: side 'up' is not one of"),
    ("c2,mixed,1,,,,,dev", "labels.csv line 5: split 'dev' is not one of train|val|test"),
    ("c2,mixed,1,,,,1;2;3,", "labels.csv line 5: roi '1;2;3' must be four integers x;y;w;h"),
    ("c2,mixed,1,,,,a;b;c;d,", "labels.csv line 5: roi 'a;b;c;d' must be four integers"),
    ("c2,mixed,1,,,,0;0;0;10,", "labels.csv line 5: roi '0;0;0;10' needs x, y >= 0 and w, h > 0"),
    ("c2,mixed,1,,,,-1;0;5;5,", "labels.csv line 5: roi '-1;0;5;5' needs x, y >= 0"),
    ("c2,mixed,3,,1,2,,", "labels.csv line 5: clip_grade 3 is not the worse of grade_left 1"),
    ("c2,mixed,1,,3,,,", "labels.csv line 5: grade_left 3 exceeds clip_grade 1"),
    ("c2,mixed,2,none,,,,", "labels.csv line 5: side 'none' does not fit clip_grade 2"),
    ("c2,mixed,1,left,0,1,,", "labels.csv line 5: side 'left' but the other hemisphere"),
    ("c2,mixed,1,,", "labels.csv line 5: 5 fields but the header has 8"),
    ("../c2,mixed,1,,,,,", "labels.csv line 5: case_id '../c2' must be"),
    (".c2,mixed,1,,,,,", "labels.csv line 5: case_id '.c2' must be"),
    ("c/2,mixed,1,,,,,", "labels.csv line 5: case_id 'c/2' must be"),
    (",mixed,1,,,,,", "labels.csv line 5: case_id '' must be"),
    ("c0,mixed,1,,,,,", "labels.csv line 5: duplicate case_id 'c0' (first on line 2)"),
    ("C0,mixed,1,,,,,", "labels.csv line 5: case_id 'C0' differs from 'c0' (line 2) only in"),
    ("c9,mixed,1,,,,,", "labels.csv line 5: no media for case 'c9'"),
]


@pytest.mark.parametrize(("row", "message"), BAD_ROWS)
def test_bad_labels_row(good: Path, row: str, message: str) -> None:
    _replace_row(good, "c2", row)
    problems = validate_dataset(good)
    assert any(p.startswith(message) for p in problems), problems
    with pytest.raises(DatasetError, match=re.escape(message)):
        read_dataset(good)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ("", "labels.csv is empty"),
        (HEADER + "\n", "labels.csv has a header but no cases"),
        ("case_id,view\nc0,coronal\n", "labels.csv line 1: missing required column(s) clip_grade"),
        ("case_id,view,view,clip_grade\n", "labels.csv line 1: column 'view' appears more"),
        ('case_id,view,clip_grade\n"c0,coronal,1\n', "labels.csv line"),
    ],
)
def test_bad_labels_file(good: Path, labels: str, message: str) -> None:
    _write(good, labels)
    assert any(p.startswith(message) for p in validate_dataset(good)), validate_dataset(good)


def test_missing_labels_or_directory_and_bad_encoding(good: Path) -> None:
    (good / "labels.csv").unlink()
    assert validate_dataset(good)[0].startswith("labels.csv is missing")
    assert "is not a directory" in validate_dataset(good / "nope")[0]
    (good / "labels.csv").write_bytes(b"case_id,view,clip_grade\n\xff\xfe,coronal,1\n")
    assert validate_dataset(good) == ["labels.csv is not UTF-8 text; save it as CSV UTF-8"]


def test_media_conflicts_and_unknown_extension(good: Path) -> None:
    write_video(good / "c2.avi", _frames(2), 25.0, codec="ffv1")
    (good / "c9.xyz").write_bytes(b"?")
    _replace_row(good, "c.1", "c9,coronal,0,,,,,")
    problems = validate_dataset(good)
    assert "labels.csv line 5: case 'c2' has 2 media (c2.avi, c2.mp4); keep exactly one" in problems
    assert any(
        "no media for case 'c9' (found c9.xyz: unrecognised extension)" in p for p in problems
    )


@pytest.mark.parametrize(
    ("grades", "extra", "message"),
    [
        ("-1,0,x,3,3", {}, "c0.frames.csv line 4: visible_grade 'x' is not -1 (no image) or"),
        ("-1,0,5,3,3", {}, "c0.frames.csv line 4: visible_grade '5' is not -1"),
        (
            "-1,0,2,4,3",
            {},
            "c0.frames.csv frame 3: visible_grade 4 exceeds clip_grade 3 (labels.csv line 2)",
        ),
        ("-1,0,2,3,3", {"valid": "1,1,1,maybe,1"}, "c0.frames.csv line 5: valid 'maybe' is not"),
        ("-1,0,2,3,3", {"valid": "1,1,1,1,1"}, "c0.frames.csv frame 0: valid but visible_grade -1"),
        ("-1,0,2,3,3", {"angle_deg": "0,0,nan,0,0"}, "c0.frames.csv line 4: angle_deg 'nan'"),
        ("-1,0,2,3,3", {"view": "x,,,,"}, "c0.frames.csv line 2: view 'x' is not one of"),
        (
            "-1,0,2,3,3",
            {"frame": "0,1,3,4,5"},
            "c0.frames.csv line 4: frame '3' where 2 was expected",
        ),
        ("-1,0,2,3,3", {"frame": "1,2,3,4,5"}, "c0.frames.csv line 2: frame '1' where 0 was"),
    ],
)
def test_bad_frames_csv(good: Path, grades: str, extra: dict[str, str], message: str) -> None:
    columns = {"frame": "0,1,2,3,4", "visible_grade": grades, **extra}
    values = [v.split(",") for v in columns.values()]
    rows = [",".join(columns)] + [",".join(r) for r in zip(*values, strict=True)]
    (good / "c0.frames.csv").write_text("\n".join(rows) + "\n")
    problems = validate_dataset(good)
    assert any(p.startswith(message) for p in problems), problems
    with pytest.raises(DatasetError, match=re.escape(message)):
        read_dataset(good)


def test_frames_csv_file_level_problems(good: Path) -> None:
    (good / "c0.frames.csv").write_text("frame,grade\n0,1\n")
    assert "c0.frames.csv line 1: missing required column(s) visible_grade" in " ".join(
        validate_dataset(good)
    )
    (good / "c0.frames.csv").write_text("frame,visible_grade\n")
    assert "c0.frames.csv has a header but no frames" in validate_dataset(good)
    (good / "c0.frames.csv").write_text("frame,visible_grade\n0,1,2\n")
    assert "c0.frames.csv line 2: 3 fields but the header has 2" in validate_dataset(good)


@pytest.mark.parametrize(
    ("masks", "message"),
    [
        ({"mask": np.zeros((T, 30, 40), bool)}, "c0.masks.npz has no array 'masks'"),
        ({"masks": np.zeros((T, 30, 40), np.float32)}, "c0.masks.npz: masks have dtype float32"),
        ({"masks": np.zeros((T, 30), bool)}, "c0.masks.npz: masks have shape (5, 30)"),
        (
            {"masks": np.zeros((T, 48, 64), bool)},
            "c0.masks.npz: masks are 64x48 but the roi is 40x30",
        ),
        ({"masks": np.zeros((T + 1, 30, 40), bool)}, "c0.masks.npz: 6 masks but the clip has 5"),
    ],
)
def test_bad_masks(good: Path, masks: dict[str, np.ndarray], message: str) -> None:
    c0 = read_dataset(good).cases[0]
    np.savez(good / "c0.masks.npz", **masks)
    assert any(p.startswith(message) for p in validate_dataset(good)), validate_dataset(good)
    if "6 masks" not in message:  # load_masks does not know the frame count
        with pytest.raises(DatasetError, match=re.escape(message)):
            load_masks(c0)


def test_corrupt_masks_file(good: Path) -> None:
    (good / "c0.masks.npz").write_bytes(b"PK\x03\x04 not a zip")
    assert any(p.startswith("cannot read c0.masks.npz") for p in validate_dataset(good))


def test_decode_checks(good: Path) -> None:
    assert validate_dataset(good) == []
    _frames_csv(good / "c2.frames.csv", [0, 0, 1, 0])  # 4 rows, the video has 5 frames
    np.savez(good / "c0.masks.npz", masks=np.zeros((T + 2, 30, 40), bool))
    (good / "c0.frames.csv").unlink()
    _replace_row(good, "c3", "c3,coronal,4,bilateral,4,2,30;30;40;30,")
    (good / "c.1" / "f9.png").write_bytes(b"GIF89a not a png")
    assert validate_dataset(good) == []  # none of this shows without decoding
    problems = validate_dataset(good, decode=True)
    assert "c2.frames.csv: 4 frames listed but c2.mp4 has 5" in problems
    assert "c0.masks.npz: 7 masks but the clip has 5 frames" in problems
    assert "labels.csv line 6: roi 30;30;40;30 lies outside the 64x48 frames of c3.dcm" in problems
    assert any(p.startswith("case 'c.1': cannot read image") and "f9.png" in p for p in problems)
    assert len(problems) == 4
    c3 = read_dataset(good).cases[3]
    with pytest.raises(DatasetError, match="roi 30;30;40;30 lies outside the 64x48"):
        load_frames(c3)


def test_error_message_lists_ten_and_counts_the_rest(good: Path) -> None:
    rows = [f"x{i},coronal,9,,,,," for i in range(15)]
    _write(good, HEADER + "\n" + "\n".join(rows) + "\n")
    assert len(validate_dataset(good)) == 30  # bad grade and missing media, per row
    with pytest.raises(DatasetError) as info:
        read_dataset(good)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(f"{good}: 30 problem(s): labels.csv line 2: clip_grade '9'")
    assert text.count("labels.csv line") == 10
    assert "and 20 more" in text and text.endswith("see docs/dataset.md")


# --- property: the reader never fails with anything but DatasetError ---------

_CELLS = st.one_of(
    st.sampled_from(
        [
            "c0",
            "c.1",
            "c2",
            "coronal",
            "sagittal",
            "mixed",
            "0",
            "4",
            "-1",
            "left",
            "none",
            "1;2;3;4",
            "0;0;64;48",
            "train",
            "",
            " ",
            "9" * 12,
            "1e3",
            "..",
            "c2.mp4",
            '"',
            "\x00",
        ]
    ),
    st.text(string.printable, max_size=8),
)
_HEADERS = st.lists(
    st.sampled_from([*HEADER.split(","), "extra", "", "CASE_ID"]), min_size=0, max_size=9
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(header=_HEADERS, rows=st.lists(st.lists(_CELLS, max_size=9), max_size=6))
def test_labels_reader_property(
    tmp_path_factory: pytest.TempPathFactory, header: list[str], rows: list[list[str]]
) -> None:
    root = _property_root(tmp_path_factory)
    text = "\n".join(",".join(r) for r in [header, *rows])
    _write(root, text)
    _check_reader(root)


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=300))
def test_labels_reader_property_bytes(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    root = _property_root(tmp_path_factory)
    (root / "labels.csv").write_bytes(b"case_id,view,clip_grade\n" + data)
    _check_reader(root)


_COLUMN_VALUES = {
    "case_id": ["c0", "c.1", "c2", "c9", "../c0", ""],
    "view": ["coronal", "sagittal", "mixed", "Axial", ""],
    "clip_grade": ["0", "1", "3", "4", "5", "x", ""],
    "side": ["left", "right", "bilateral", "none", "", "up"],
    "grade_left": ["0", "2", "4", "", "-1"],
    "grade_right": ["0", "1", "", "9"],
    "roi": ["", "0;0;64;48", "1;2;3", "0;0;0;1"],
    "split": ["train", "val", "test", "", "dev"],
}


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(
        st.tuples(*(st.sampled_from(v) for v in _COLUMN_VALUES.values())), min_size=1, max_size=4
    )
)
def test_labels_reader_property_structured(
    tmp_path_factory: pytest.TempPathFactory, rows: list[tuple[str, ...]]
) -> None:
    root = _property_root(tmp_path_factory)
    _write(root, HEADER + "\n" + "\n".join(",".join(r) for r in rows) + "\n")
    ds = _check_reader(root)
    if ds is not None:
        assert [c.case_id for c in ds.cases] == [r[0] for r in rows]
        assert [c.clip_grade for c in ds.cases] == [int(r[2]) for r in rows]


def _property_root(factory: pytest.TempPathFactory) -> Path:
    root = factory.getbasetemp() / "property"
    if not root.exists():
        root.mkdir()
        (root / "c0.mp4").write_bytes(b"not decoded without --decode")
        (root / "c.1").mkdir()
        (root / "c2.dcm").write_bytes(b"")
        _frames_csv(root / "c0.frames.csv", [0, 1, 2])
    return root


def _check_reader(root: Path) -> Dataset | None:
    problems = validate_dataset(root)
    assert all(isinstance(p, str) and "\n" not in p for p in problems)
    try:
        ds = read_dataset(root)
    except DatasetError as exc:
        assert problems and str(exc).endswith("see docs/dataset.md")
        return None
    assert not problems and all(isinstance(c, Case) for c in ds.cases)
    return ds


def test_exam_grade_is_read_and_may_not_be_below_the_clip_grade(good: Path) -> None:
    lines = [line for line in (good / "labels.csv").read_text().splitlines() if line]
    grades = {line.split(",")[0]: int(line.split(",")[2]) for line in lines[1:]}
    exam = {cid: min(g + 1, 4) for cid, g in grades.items()}  # the sweep missed the worst
    rows = [lines[0] + ",exam_grade"] + [f"{line},{exam[line.split(',')[0]]}" for line in lines[1:]]
    _write(good, "\n".join(rows) + "\n")
    ds = read_dataset(good)
    assert {c.case_id: c.exam_grade for c in ds.cases} == exam
    assert all(c.clip_grade == grades[c.case_id] for c in ds.cases)
    assert rows[1].startswith("c0,coronal,3,")
    rows[1] = rows[1].rsplit(",", 1)[0] + ",0"
    _write(good, "\n".join(rows) + "\n")
    with pytest.raises(DatasetError, match="exam_grade 0 is below clip_grade 3"):
        read_dataset(good)


def test_read_dataset_meta_leaves_out_what_it_cannot_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from pivh_live.dataset import META_FILE, read_dataset_meta

    assert read_dataset_meta(tmp_path) is None  # not a phantom dataset
    (tmp_path / META_FILE).write_text('{"generator": "pivh_live.phantom", "seed": 5}')
    assert read_dataset_meta(tmp_path) == {"generator": "pivh_live.phantom", "seed": 5}
    (tmp_path / META_FILE).write_text("{not json")
    with caplog.at_level("WARNING", logger="pivh_live.dataset.common"):
        assert read_dataset_meta(tmp_path) is None
    assert "cannot read" in caplog.text
    (tmp_path / META_FILE).write_text("[1, 2]")
    assert read_dataset_meta(tmp_path) is None
