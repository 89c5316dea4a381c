"""Recorded media as sources: video, image folder, DICOM; loop and real-time pacing."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, UltrasoundMultiFrameImageStorage, generate_uid

from pivh_live.errors import MediaError
from pivh_live.media import write_video
from pivh_live.sources import create_source, open_source
from pivh_live.sources.files import FileSource

H, W, T = 48, 64, 6


class FakeClock:
    def __init__(self) -> None:
        self.t_ns = 10_000_000_000
        self.sleeps: list[float] = []

    def __call__(self) -> int:
        return self.t_ns

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t_ns += round(seconds * 1e9)


def frames_with_ids(n: int = T) -> np.ndarray:
    """Speckle-like gray frames whose top-left pixel is the frame number x 20."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 200, (n, H, W), dtype=np.uint8)
    frames[:, 0, 0] = np.arange(n) * 20
    return frames


def write_dicom(path: Path, frames: np.ndarray, **elements: object) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "US"
    ds.Rows, ds.Columns = frames.shape[1:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    if len(frames) > 1:
        ds.NumberOfFrames = len(frames)
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    ds.PixelData = frames.tobytes()
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    return path


def ids(frames: list) -> list[int]:
    return [int(f.image[0, 0]) // 20 for f in frames]


def test_video_file_fast_gives_every_frame_then_ends(tmp_path: Path) -> None:
    frames = frames_with_ids()
    path = write_video(tmp_path / "clip.mkv", frames, 25.0, codec="ffv1")
    with open_source(f"file:{path}?pace=fast") as src:
        got = list(src)
        info = src.info
        assert src.read() is None
    assert [f.seq for f in got] == list(range(T))
    np.testing.assert_array_equal(np.stack([f.image for f in got]), frames)
    assert [f.media_time_s for f in got] == pytest.approx([i / 25 for i in range(T)])
    assert (info.kind, info.live, info.width, info.height, info.fps) == (
        "video", False, W, H, 25.0
    )  # fmt: skip


def test_plain_path_is_a_file_source(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.mkv", frames_with_ids(), 25.0, codec="ffv1")
    assert isinstance(create_source(str(path)), FileSource)


def test_image_folder_in_natural_order_with_fps_file(tmp_path: Path) -> None:
    frames = frames_with_ids()
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, image in enumerate(frames):
        cv2.imwrite(str(folder / f"img{i + 1}.png"), image)  # img10 sorts after img9
    (folder / "fps.txt").write_text("12.5\n")
    with open_source(f"file:{folder}?pace=fast") as src:
        got = list(src)
        assert (src.info.kind, src.info.fps) == ("images", 12.5)
    assert ids(got) == list(range(T))
    assert got[1].media_time_s == pytest.approx(0.08)


def test_dicom_cine_and_single_frame(tmp_path: Path) -> None:
    frames = frames_with_ids()
    cine = write_dicom(tmp_path / "cine.dcm", frames, FrameTime=40.0)
    with open_source(f"{cine}?pace=fast") as src:
        got = list(src)
        assert (src.info.kind, src.info.fps) == ("dicom", 25.0)
    np.testing.assert_array_equal(np.stack([f.image for f in got]), frames)
    single = write_dicom(tmp_path / "one.dcm", frames[:1])
    with open_source(f"file:{single}?pace=fast") as src:
        assert src.read() is not None
        assert src.read() is None


def test_loop_restarts_and_keeps_counting(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.mkv", frames_with_ids(), 25.0, codec="ffv1")
    with open_source(f"file:{path}?loop=1&pace=fast") as src:
        got = [src.read() for _ in range(2 * T + 2)]
        assert src.info.live
    assert ids(got) == list(range(T)) * 2 + [0, 1]
    assert [f.seq for f in got if f is not None] == list(range(2 * T + 2))
    assert got[T] is not None and got[T].media_time_s == 0.0


def test_realtime_pacing_follows_the_clip_clock_across_loops(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.mkv", frames_with_ids(), 25.0, codec="ffv1")
    clock = FakeClock()
    with create_source(f"file:{path}?loop=1", clock=clock, sleep=clock.sleep) as src:
        got = [src.read() for _ in range(T + 3)]
    stamps = [f.t_capture_ns for f in got if f is not None]
    assert np.diff(stamps).tolist() == [40_000_000] * (T + 2)
    assert src.stats.dropped == 0


def test_realtime_skips_frames_a_slow_consumer_missed(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.mkv", frames_with_ids(), 25.0, codec="ffv1")
    clock = FakeClock()
    with create_source(f"file:{path}", clock=clock, sleep=clock.sleep) as src:
        first = src.read()
        clock.t_ns += 130_000_000  # busy for 3.25 frame periods
        late = src.read()
        rest = list(src)
    assert first is not None and late is not None
    # Frames 1 and 2 are more than a period late and skipped, like a capture card would;
    # frame 3 (due 10 ms ago) is shown.
    assert ids([first, late, *rest]) == [0, 3, 4, 5]
    assert src.stats.dropped == 2
    assert late.t_capture_ns == first.t_capture_ns + 130_000_000


def test_missing_and_corrupt_files_fail_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="does not exist") as exc:
        open_source(f"file:{tmp_path / 'nope.mp4'}")
    assert "\n" not in str(exc.value)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 10)
    with pytest.raises(MediaError) as exc, open_source(str(junk)) as src:
        src.read()
    assert "\n" not in str(exc.value)
