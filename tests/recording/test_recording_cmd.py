"""`pivh-live record`: a headless run that records a session into the store."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

from pivh_live.commands import record, run
from pivh_live.errors import ConfigError, PivhError
from pivh_live.media import iter_frames
from pivh_live.recording import SessionStore

sys.path.insert(0, str(Path(__file__).parents[1] / "pipeline"))
from pipeline_fakes import grade_frames, make_tiny_bundle, write_clip

SOURCE = "phantom:?seed=2&grade=3&fps=20&pace=realtime"
GRADES = [0] * 20 + [3] * 30 + [0] * 25


def _args(tmp_path: Path, *extra: str, source: str = SOURCE) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    record.configure(parser)
    bundle = make_tiny_bundle(tmp_path / "bundle")
    base = ["--model", str(bundle), "--data-dir", str(tmp_path / "data"), "--source", source]
    return parser.parse_args([*base, *extra])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--no-record"], "record always records"),
        (["--duration", "0"], "--duration"),
        (["--crf", "60"], "--crf"),
    ],
)
def test_bad_options_fail_in_one_line(tmp_path: Path, extra: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        record.main(_args(tmp_path, *extra))
    assert not (tmp_path / "data" / "sessions").exists() or not any(
        (tmp_path / "data" / "sessions").iterdir()
    )


def test_factory_for_run_honours_no_record(tmp_path: Path) -> None:
    args = _args(tmp_path)
    args.no_record = True
    assert run.recorder_factory(args, tmp_path) is None
    args.no_record = False
    rec = run.recorder_factory(args, tmp_path)
    try:
        assert rec.needs_record
        meta = rec.store.meta(rec.session_id)
        assert meta["source_kind"] == "phantom" and "seed" not in str(meta)
        assert meta["model"]["name"] == "tiny-brightness" and meta["engine"] == "onnxruntime"
    finally:
        rec.close()


def test_a_nearly_full_disk_refuses_to_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(1 << 40, 0, 1 << 20))
    with pytest.raises(PivhError, match="only 1 MiB free"):
        record.main(_args(tmp_path, "--duration", "1"))


@pytest.mark.slow
@pytest.mark.parametrize("mode", [["--single-process"], []])
def test_record_writes_a_complete_session(tmp_path: Path, mode: list[str]) -> None:
    clip = write_clip(tmp_path / "clip.mkv", grade_frames(GRADES, size=(60, 80)))
    args = _args(tmp_path, "--roi", "0,0,80,60", *mode, source=f"file:{clip}?pace=realtime")
    assert record.main(args) == 0  # ends when the clip does
    store = SessionStore(tmp_path / "data")
    [info] = store.list_sessions()
    assert info.status == "complete" and info.source_kind == "file"
    assert info.model == "tiny-brightness 0.0.1"
    decoded = list(iter_frames(store.video_path(info.id)))
    assert len(decoded) == info.frames
    lines = list(store.frames(info.id))
    assert info.alerts == 1 and info.worst_grade == max(r["grade"] for r in lines) >= 2
    assert lines and all("t_capture_ns" in r and "latency_ms" in r for r in lines)
    meta = store.meta(info.id)
    assert meta["missed_frames"] == 0 and str(tmp_path) not in json.dumps(meta)
    # A real-time source drops frames a loaded machine cannot take (as a capture card
    # does); in several processes the frames sent before the recorder connects are lost.
    assert len(GRADES) - 10 <= info.frames <= len(GRADES)
    if mode:  # one process: each recorded frame with its own result
        assert len(lines) == info.frames
    assert {f.kind for f in store.findings(info.id)} == {"alert_onset", "worst_grade"}


def test_recording_options_can_join_run() -> None:
    from pivh_live.commands import run

    parser = argparse.ArgumentParser()
    run.configure(parser)
    record.add_recording_options(parser)
    record.add_recording_options(parser)  # twice (run may add them itself): no conflict
    args = parser.parse_args(["--keep-days", "7", "--max-store-gb", "0", "--preset", "superfast"])
    assert (args.keep_days, args.max_store_gb, args.preset, args.crf) == (7.0, 0.0, "superfast", 18)
