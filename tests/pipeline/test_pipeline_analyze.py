"""Offline analyze: the public output schema, agreement with summarize_clip, batch errors.

Runs the real path: a tiny ONNX bundle (brightness model) in ONNX Runtime.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pipeline_fakes import grade_frames, make_tiny_bundle, write_clip

from pivh_live import DISCLAIMER
from pivh_live.errors import MediaError
from pivh_live.frames import Roi
from pivh_live.pipeline.analyze import INDEX_FILE, AnalyzeOptions, analyze, output_dirs
from pivh_live.smoothing import SmoothingConfig, summarize_clip

pytest.importorskip("onnx")

# Grade pattern of the test clip: normal, a grade-III lesion passing, blank frames, normal.
GRADES = [0] * 15 + [3] * 30 + [-1] * 10 + [0] * 25
FRAME_KEYS = {
    "frame": int, "t": float, "valid": bool, "p_pivh": float, "grade_probs": list,
    "grade": int, "alert": bool, "status": str, "p_valid": float, "p_pivh_smoothed": float,
}  # fmt: skip
SUMMARY_KEYS = {
    "schema": str, "disclaimer": str, "source": str, "clip_grade": int, "p_pivh": float,
    "p_severe": float, "assessable": bool, "frames": int, "valid_frames": int,
    "alert_frames": int, "alert_onsets": int, "alert_spans": list, "fps": float, "roi": list,
    "model": dict, "engine": str, "thresholds": dict, "smoothing": dict, "processing": dict,
    "pivh_live_version": str, "skipped_frames": int,
}  # fmt: skip


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("analyze")
    bundle = make_tiny_bundle(root / "bundle")
    clip = write_clip(root / "sweep.mkv", grade_frames(GRADES, seed=5), fps=25.0)
    normal = write_clip(root / "normal.mkv", grade_frames([0] * 20, seed=6), fps=30.0)
    return {"bundle": bundle, "clip": clip, "normal": normal, "root": root}


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_frames_and_summary_follow_the_schema(inputs, tmp_path: Path) -> None:
    items = analyze(
        [inputs["clip"]], tmp_path, AnalyzeOptions(model=inputs["bundle"]), progress=False
    )
    assert len(items) == 1 and items[0].error is None and items[0].out_dir == tmp_path
    frames = _lines(tmp_path / "frames.jsonl")
    assert [f["frame"] for f in frames] == list(range(len(GRADES)))
    for f in frames:
        assert set(f) == {*FRAME_KEYS, "motion"}
        for key, kind in FRAME_KEYS.items():
            assert type(f[key]) is kind, key
        assert f["motion"] is None or type(f["motion"]) is float
        assert len(f["grade_probs"]) == 5 and all(type(p) is float for p in f["grade_probs"])
        assert 0 <= f["grade"] <= 4
        assert f["status"] in ("starting", "scoring", "no_valid_image", "frozen")
        assert f["alert"] is False or f["grade"] >= 1
    assert frames[20]["t"] == pytest.approx(20 / 25)
    assert any(f["alert"] for f in frames[15:45]) and not any(f["alert"] for f in frames[:15])
    assert {f["status"] for f in frames[50:55]} == {"no_valid_image"}  # after 0.2 s

    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary) >= set(SUMMARY_KEYS)
    for key, kind in SUMMARY_KEYS.items():
        assert type(summary[key]) is kind, key
    assert summary["schema"] == "pivh-live-analyze/1" and summary["disclaimer"] == DISCLAIMER
    assert summary["source"] == "sweep.mkv"  # the file name only, never the directory
    assert summary["frames"] == len(GRADES) and summary["fps"] == 25.0
    assert summary["model"] == {
        "name": "tiny-brightness",
        "version": "0.0.1",
        "sha256": summary["model"]["sha256"],
    }
    assert summary["roi"] == [0, 0, 48, 48] and summary["skipped_frames"] == 0
    assert summary["clip_grade"] >= 1 and summary["assessable"] is True
    assert summary["valid_frames"] == sum(f["valid"] for f in frames)
    assert summary["alert_frames"] == sum(f["alert"] for f in frames)
    assert not (tmp_path / "overlay.mp4").exists()


def test_summary_agrees_with_summarize_clip_exactly(inputs, tmp_path: Path) -> None:
    analyze([inputs["clip"]], tmp_path, AnalyzeOptions(model=inputs["bundle"]), progress=False)
    frames = _lines(tmp_path / "frames.jsonl")
    summary = json.loads((tmp_path / "summary.json").read_text())
    motion = [np.nan if f["motion"] is None else f["motion"] for f in frames]
    clip = summarize_clip(
        np.array([f["t"] for f in frames]),
        np.array([f["grade_probs"] for f in frames]),
        np.array([f["p_valid"] for f in frames]),
        SmoothingConfig.from_thresholds(0.5, 0.5, 0.5),
        motion=np.array(motion),
    )
    assert summary["clip_grade"] == clip.clip_grade
    assert summary["p_pivh"] == clip.p_pivh and summary["p_severe"] == clip.p_severe
    assert summary["alert_frames"] == clip.alert_frames
    assert summary["valid_frames"] == clip.valid_frames and summary["frames"] == clip.frames
    assert [f["alert"] for f in frames] == clip.alert.tolist()
    assert [f["grade"] for f in frames] == np.maximum(clip.grade, 0).tolist()
    assert [f["status"] for f in frames] == clip.status.tolist()
    assert [f["p_pivh_smoothed"] for f in frames] == clip.p_pivh_smoothed.tolist()
    spans = [[a / 1e9, b / 1e9] for a, b in clip.summary.alert_spans]
    assert summary["alert_spans"] == spans


def test_batch_reports_bad_inputs_and_processes_the_rest(inputs, tmp_path: Path) -> None:
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    root = inputs["root"]
    corrupt = root / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).bytes(2000))
    report = root / "report.dcm"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # a structured report
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(report), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.Modality = "SR"
    ds.save_as(report, enforce_file_format=True)
    assert pydicom.dcmread(report).Modality == "SR"

    sources = [inputs["clip"], root / "missing.mp4", corrupt, report, inputs["normal"]]
    items = analyze(sources, tmp_path, AnalyzeOptions(model=inputs["bundle"]), progress=False)
    assert [i.error is None for i in items] == [True, False, False, False, True]
    assert "does not exist" in (items[1].error or "")
    assert "no pixel data" in (items[3].error or "")
    for item in items:
        assert item.error is None or "\n" not in item.error
    assert (tmp_path / "sweep" / "frames.jsonl").is_file()
    assert json.loads((tmp_path / "normal" / "summary.json").read_text())["fps"] == 30.0
    index = json.loads((tmp_path / INDEX_FILE).read_text())
    assert index["failed"] == 3 and [e["dir"] for e in index["inputs"]] == [
        "sweep", "missing", "corrupt", "report", "normal",
    ]  # fmt: skip
    assert index["inputs"][0]["clip_grade"] == items[0].summary["clip_grade"]  # type: ignore[index]


def test_a_single_bad_input_raises_its_one_line_error(inputs, tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="does not exist"):
        analyze(
            [tmp_path / "nope.mp4"],
            tmp_path,
            AnalyzeOptions(model=inputs["bundle"]),
            progress=False,
        )


def test_roi_and_overlay_video(inputs, tmp_path: Path) -> None:
    from pivh_live.media import read_frames

    options = AnalyzeOptions(model=inputs["bundle"], roi=Roi(4, 6, 30, 20), overlay_video=True)
    analyze([inputs["normal"]], tmp_path, options, progress=False)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["roi"] == [4, 6, 30, 20]
    video, fps = read_frames(tmp_path / "overlay.mp4")
    assert video.shape == (20, 20, 30) and fps == pytest.approx(30.0)


def test_output_dirs_are_unique_per_input(tmp_path: Path) -> None:
    dirs = output_dirs([Path("a/x.mp4"), Path("b/x.avi"), Path("y.dcm"), Path("c/x")], tmp_path)
    assert [d.name for d in dirs] == ["x", "x-2", "y", "x-3"]
    assert output_dirs([Path("a/x.mp4")], tmp_path) == [tmp_path]
