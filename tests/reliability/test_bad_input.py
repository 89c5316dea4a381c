"""Bad input through the real command line: one clear line on stderr, no traceback, exit 1.

Each case is a file or setting a user could plausibly hand the tool: a
truncated or corrupt video, DICOM of another modality or without pixels, a
folder without images, a damaged model bundle, a malformed config, a bad
source or ROI. Where one input of several is bad, the good ones are still
processed (nothing lost).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pipeline_fakes as fakes
import pytest

from pivh_live.cli import main

pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad-input")
    return {
        "bundle": fakes.make_tiny_bundle(root / "bundle"),
        "clip": fakes.write_clip(root / "clip.mkv", fakes.grade_frames([0] * 5 + [3] * 10)),
    }


def _one_line_error(capsys: pytest.CaptureFixture[str], command: str, needle: str) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith(f"pivh-live {command}: error: ")]
    assert errors, err
    assert "Traceback" not in err
    assert needle in errors[-1], errors[-1]
    return errors[-1]


# --- media -----------------------------------------------------------------------


def _truncated(tmp: Path, good: dict[str, Path]) -> Path:
    path = tmp / "cut.mp4"
    frames = fakes.grade_frames([0] * 30)
    data = fakes.write_clip(tmp / "full.mp4", frames).read_bytes()
    path.write_bytes(data[: len(data) // 3])
    return path


def _dicom(tmp: Path, modality: str = "US", pixels: bool = True) -> Path:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, UltrasoundImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    path = tmp / f"{modality.lower()}{'' if pixels else '-nopix'}.dcm"
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, generate_uid()
    ds.Modality = modality
    ds.Rows, ds.Columns, ds.SamplesPerPixel = 32, 32, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    if pixels:
        ds.PixelData = np.zeros((32, 32), np.uint8).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def _unsupported_syntax(tmp: Path) -> Path:
    from pydicom.encaps import encapsulate
    from pydicom.pixels import get_decoder
    from pydicom.uid import JPEGLSLossless

    if get_decoder(JPEGLSLossless).is_available:
        pytest.skip("a JPEG-LS decoder is installed here")
    path = _dicom(tmp)
    import pydicom

    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = JPEGLSLossless
    ds.PixelData = encapsulate([b"\xff\xd8fake"])
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    return path


def _text_folder(tmp: Path) -> Path:
    folder = tmp / "notes"
    folder.mkdir()
    (folder / "a.txt").write_text("not an image")
    (folder / "b.jpg").write_bytes(b"not a jpeg either")
    return folder


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


MEDIA: dict[str, tuple[Callable[..., Path], str]] = {
    "missing file": (lambda tmp, good: tmp / "gone.mp4", "does not exist"),
    "empty file": (lambda tmp, good: _write(tmp / "e.mp4", b""), "e.mp4"),
    "random bytes": (
        lambda tmp, good: _write(tmp / "r.mp4", np.random.default_rng(0).bytes(5000)),
        "r.mp4",
    ),
    "truncated mp4": (_truncated, "cut.mp4"),
    "CT DICOM": (lambda tmp, good: _dicom(tmp, "CT"), "is a CT image, not ultrasound"),
    "DICOM without pixels": (lambda tmp, good: _dicom(tmp, pixels=False), "has no pixel data"),
    "unsupported transfer syntax": (lambda tmp, good: _unsupported_syntax(tmp), "JPEG-LS"),
    "folder of non-images": (lambda tmp, good: _text_folder(tmp), "notes"),
}


@pytest.mark.parametrize("case", list(MEDIA))
def test_analyze_refuses_bad_media_in_one_line(case, good, tmp_path, capsys) -> None:
    make, needle = MEDIA[case]
    path = make(tmp_path, good)
    code = main(["analyze", str(path), "--out", str(tmp_path / "out"),
                 "--model", str(good["bundle"])])  # fmt: skip
    assert code == 1
    _one_line_error(capsys, "analyze", needle)


def test_a_bad_input_in_a_batch_does_not_lose_the_good_ones(good, tmp_path, capsys) -> None:
    bad = _dicom(tmp_path, "MR")
    out = tmp_path / "out"
    code = main(["analyze", str(good["clip"]), str(bad), "--out", str(out),
                 "--model", str(good["bundle"])])  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err
    assert "mr.dcm: error: " in err and "not ultrasound" in err and "Traceback" not in err
    summary = json.loads((out / "clip" / "summary.json").read_text())
    assert summary["frames"] == 15


# --- model bundles -------------------------------------------------------------------


def _damage(good: dict[str, Path], tmp: Path, how: str) -> Path:
    bundle = tmp / "bundle"
    shutil.copytree(good["bundle"], bundle)
    card = bundle / "model.json"
    if how == "bad hash":
        data = bytearray((bundle / "model.onnx").read_bytes())
        data[-1] ^= 0xFF
        (bundle / "model.onnx").write_bytes(bytes(data))
    elif how == "missing model.onnx":
        (bundle / "model.onnx").unlink()
    elif how == "missing model.json":
        card.unlink()
    elif how == "malformed model.json":
        card.write_text(card.read_text()[:-20])
    elif how == "wrong input shape":
        meta = json.loads(card.read_text())
        meta["input"]["shape"] = [1, 1, 128, 128]
        card.write_text(json.dumps(meta))
    elif how == "not a bundle":
        shutil.rmtree(bundle)
        bundle.mkdir()
        (bundle / "readme.txt").write_text("hello")
    return bundle


BUNDLES = {
    "bad hash": "hash does not match",
    "missing model.onnx": "model.onnx",
    "missing model.json": "model.json",
    "malformed model.json": "model.json",
    "wrong input shape": "shape",
    "not a bundle": "model.json",
}


@pytest.mark.parametrize("how", list(BUNDLES))
@pytest.mark.parametrize("command", ["run", "analyze"])
def test_a_damaged_bundle_is_refused_before_anything_starts(
    how, command, good, tmp_path, capsys
) -> None:
    bundle = _damage(good, tmp_path, how)
    if command == "run":
        argv = ["run", "--model", str(bundle), "--headless", "--no-record", "--duration", "1"]
    else:
        argv = ["analyze", str(good["clip"]), "--out", str(tmp_path / "o"), "--model", str(bundle)]
    assert main(argv) == 1
    _one_line_error(capsys, command, BUNDLES[how])


# --- settings ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["run", "--source", "bogus://x", "--headless", "--no-record"], "bogus"),
        (["run", "--source", "file:/nowhere/clip.mp4", "--headless", "--no-record"], "clip.mp4"),
        (["run", "--source", "phantom:?fps=abc", "--headless", "--no-record"], "fps"),
        (["run", "--roi", "1,2,3", "--headless", "--no-record", "--duration", "1"], "roi"),
        (["run", "--profile", "nosuch", "--headless", "--no-record"], "nosuch"),
        (["run", "--duration", "-1", "--headless", "--no-record"], "--duration"),
    ],
)
def test_bad_run_settings_fail_in_one_line(argv, needle, capsys) -> None:
    assert main(argv) == 1
    _one_line_error(capsys, "run", needle)


def test_malformed_training_config_fails_in_one_line(good, tmp_path, capsys) -> None:
    pytest.importorskip("torch")
    config = tmp_path / "train.json"
    config.write_text('{"epochs": 3,,}')
    assert main(["train", "--data", str(tmp_path), "--config", str(config)]) == 1
    _one_line_error(capsys, "train", "malformed JSON at line 1")


def test_a_folder_that_is_not_a_dataset(tmp_path, capsys) -> None:
    (tmp_path / "labels.csv").write_text("case_id,clip_grade\nx,9\n")
    assert main(["check-data", str(tmp_path)]) == 1
    out = capsys.readouterr()
    assert "labels.csv line 1: missing required column(s) view" in out.out + out.err
    assert "Traceback" not in out.out + out.err
