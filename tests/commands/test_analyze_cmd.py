"""`pivh-live analyze`: options, output files, exit codes, one-line errors."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pipeline_fakes as fakes
import pytest

from pivh_live.commands import analyze as cmd
from pivh_live.errors import ConfigError, MediaError

pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cmd")
    return {
        "bundle": fakes.make_tiny_bundle(root / "bundle"),
        "lesion": fakes.write_clip(root / "lesion.mkv", fakes.grade_frames([0] * 5 + [4] * 25)),
        "normal": fakes.write_clip(root / "normal.mkv", fakes.grade_frames([0] * 12, seed=3)),
    }


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    cmd.configure(parser)
    return cmd.main(parser.parse_args(argv))


def test_one_clip(files, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert _run([str(files["lesion"]), "--out", str(out), "--model", str(files["bundle"])]) == 0
    stdout = capsys.readouterr().out
    assert stdout.startswith("lesion.mkv: clip grade 4, P(PIVH) ")
    assert f"-> {out}" in stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["clip_grade"] == 4 and summary["frames"] == 30
    assert len((out / "frames.jsonl").read_text().splitlines()) == 30


def test_batch_with_a_bad_input_exits_1(files, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    argv = [str(files["lesion"]), str(tmp_path / "gone.mp4"), str(files["normal"]),
            "--out", str(out), "--model", str(files["bundle"]), "--batch", "3",
            "--threads", "1", "--overlay-video"]  # fmt: skip
    assert _run(argv) == 1
    captured = capsys.readouterr()
    assert "gone.mp4: error: " in captured.err and "does not exist" in captured.err
    assert "1 of 3 inputs failed" in captured.err
    assert "normal.mkv: clip grade 0" in captured.out
    for name in ("lesion", "normal"):
        assert (out / name / "summary.json").is_file() and (out / name / "overlay.mp4").is_file()
    index = json.loads((out / "index.json").read_text())
    assert [e["ok"] for e in index["inputs"]] == [True, False, True]


def test_single_bad_input_raises_for_the_cli(files, tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="does not exist; check the path"):
        _run([str(tmp_path / "gone.mp4"), "--out", str(tmp_path), "--model", str(files["bundle"])])


def test_roi_options(files, tmp_path: Path) -> None:
    base = [str(files["normal"]), "--model", str(files["bundle"])]
    assert _run([*base, "--out", str(tmp_path / "a"), "--roi", "2,3,20,10"]) == 0
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["roi"] == [2, 3, 20, 10]
    assert _run([*base, "--out", str(tmp_path / "b"), "--roi", "auto"]) == 0
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["frames"] + summary["skipped_frames"] == 12
    with pytest.raises(ConfigError, match="bad ROI"):
        _run([*base, "--out", str(tmp_path / "c"), "--roi", "1,2"])
    with pytest.raises(ConfigError, match="--batch"):
        _run([*base, "--out", str(tmp_path / "c"), "--batch", "0"])
