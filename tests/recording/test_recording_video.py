"""RegionVideoWriter: timing from capture stamps, gray range, sizes, keyframes, cut files."""

from __future__ import annotations

import stat
from pathlib import Path

import numpy as np
import pytest
from recording_fakes import region_image

from pivh_live.media import iter_frames
from pivh_live.recording.video import RegionVideoWriter, count_video_frames

T0 = 7 * 10**9


def _keyframe_times(path: Path) -> list[float]:
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return [float(p.pts * s.time_base) for p in c.demux(s) if p.size and p.is_keyframe]


def test_timing_gaps_and_keyframes(tmp_path: Path) -> None:
    path = tmp_path / "v.mp4"
    w = RegionVideoWriter(path)
    times = [i / 25 for i in range(50)] + [5.0 + i / 25 for i in range(50)]  # a 3 s gap
    for i, t in enumerate(times):
        w.write(region_image(i, (60, 80)), T0 + round(t * 1e9))
    w.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    decoded = list(iter_frames(path))
    assert [f.t for f in decoded] == pytest.approx(times, abs=6e-4)
    keys = _keyframe_times(path)
    assert keys[0] == 0.0 and 5.0 in [round(k, 3) for k in keys]
    # A player seeking anywhere finds a keyframe at most 1 s back.
    assert all(t - max(k for k in keys if k <= t + 1e-9) < 1.0 + 1e-3 for t in times)
    assert count_video_frames(path) == 100


def test_gray_values_keep_their_full_range(tmp_path: Path) -> None:
    path = tmp_path / "v.mp4"
    w = RegionVideoWriter(path, crf=0)
    levels = [0, 16, 128, 235, 255]
    for i, v in enumerate(levels):
        w.write(np.full((32, 48), v, np.uint8), T0 + i * 40_000_000)
    w.close()
    got = [int(np.median(f.image)) for f in iter_frames(path)]
    assert got == levels  # no squeeze into 16-235 and back


def test_odd_sizes_size_changes_and_color(tmp_path: Path) -> None:
    path = tmp_path / "v.mp4"
    w = RegionVideoWriter(path)
    first = region_image(0, (61, 81))
    w.write(first, T0)
    w.write(np.full((30, 81), 200, np.uint8), T0 + 40_000_000)  # the ROI changed
    w.write(np.dstack([first] * 3), T0 + 80_000_000)  # a color frame into a gray video
    w.close()
    assert w.size == (81, 61) and w.resized == 1
    frames = [f.image for f in iter_frames(path)]
    assert frames[0].shape == (62, 82)  # padded to even
    assert np.abs(frames[0][:61, :81].astype(int) - first).mean() < 4
    band = frames[1][:61, :81]
    assert band[30, 40] > 190 and band[2, 40] < 10  # letterboxed on black
    assert np.abs(frames[2][:61, :81].astype(int) - first).mean() < 4

    cpath = tmp_path / "c.mp4"
    cw = RegionVideoWriter(cpath)
    bgr = np.zeros((40, 40, 3), np.uint8)
    bgr[..., 2] = 200  # red
    cw.write(bgr, T0)
    cw.close()
    assert cw.color and len(list(iter_frames(cpath))) == 1


def test_a_cut_file_decodes_its_complete_fragments(tmp_path: Path) -> None:
    path = tmp_path / "v.mp4"
    w = RegionVideoWriter(path)
    for i in range(75):  # 3 s at 25 fps, without close(): the process "dies" here
        w.write(region_image(i, (60, 80)), T0 + i * 40_000_000)
    data = path.read_bytes()  # what the OS has: flushed fragments only
    w.close()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) - 100])  # and a torn write at the end
    n = len(list(iter_frames(cut)))
    assert 75 - 25 <= n < 75  # at most about 1 s lost (fragments of 0.5 s)
    assert count_video_frames(cut) == n
