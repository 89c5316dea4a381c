"""Access and privacy on a real run: private files and sockets, no identifiers in logs.

The web app's loopback default and token, path traversal through session ids
and file names, and bundle integrity have their own tests
(tests/web/test_web_auth.py, tests/web/test_web_review.py, tests/test_bundle.py).
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import numpy as np
import pipeline_fakes as fakes
import pytest

from pivh_live.cli import main

pytest.importorskip("onnx")


NAME, PATIENT_ID, BIRTH = "DOE^JANE", "PID-93417", "20260101"


def _dicom_with_identifiers(folder: Path) -> Path:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, UltrasoundMultiFrameImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    path = folder / "scan.dcm"
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, generate_uid()
    ds.Modality = "US"
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = NAME, PATIENT_ID, BIRTH
    frames = fakes.grade_frames([0] * 4 + [3] * 8, size=(64, 64))
    ds.Rows, ds.Columns, ds.SamplesPerPixel = 64, 64, 1
    ds.NumberOfFrames = len(frames)
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.ascontiguousarray(frames).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def _all_text(root: Path) -> str:
    return "\n".join(p.read_bytes().decode("latin-1") for p in root.rglob("*") if p.is_file())


def test_dicom_identifiers_never_reach_logs_or_outputs(tmp_path, caplog, capsys) -> None:
    scan = _dicom_with_identifiers(tmp_path)
    bundle = fakes.make_tiny_bundle(tmp_path / "bundle")
    out = tmp_path / "out"
    with caplog.at_level(logging.DEBUG):
        assert main(["-v", "analyze", str(scan), "--out", str(out), "--model", str(bundle)]) == 0
    captured = capsys.readouterr()
    seen = caplog.text + captured.out + captured.err + _all_text(out)
    for ident in (NAME, "DOE", PATIENT_ID, BIRTH):
        assert ident not in seen


@pytest.mark.slow
def test_a_run_keeps_its_recording_and_sockets_private(tmp_path, caplog, capsys) -> None:
    data = tmp_path / "store"
    patient_dir = tmp_path / "DOE^JANE"  # exports are often named after the patient
    patient_dir.mkdir()
    clip = fakes.write_clip(patient_dir / "clip.mkv", fakes.grade_frames([0] * 10 + [3] * 40))
    bundle = fakes.make_tiny_bundle(tmp_path / "bundle")
    with caplog.at_level(logging.INFO):
        code = main(["run", "--source", f"file:{clip}", "--model", str(bundle), "--headless",
                     "--data-dir", str(data), "--duration", "20"])  # fmt: skip
    assert code == 0
    files = [p for p in data.rglob("*") if p.is_file()]
    dirs = [data, *(p for p in data.rglob("*") if p.is_dir())]
    assert any(p.name == "video.mp4" for p in files)
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) & 0o077 == 0, p
    for d in dirs:
        assert stat.S_IMODE(d.stat().st_mode) & 0o077 == 0, d
    # The stored session names the kind of source, never its path.
    assert "DOE" not in _all_text(data)
    from pivh_live.transport import runtime_dir

    assert stat.S_IMODE(runtime_dir().stat().st_mode) == 0o700
    assert runtime_dir().stat().st_uid == os.getuid()
