"""Decoding of videos, image folders and DICOM files to gray frames."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import convert_color_space
from pydicom.uid import (
    MPEG4HP41,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    UltrasoundMultiFrameImageStorage,
    generate_uid,
)

from pivh_live.errors import MediaError
from pivh_live.media import (
    MediaFrame,
    MediaInfo,
    iter_frames,
    media_kind,
    probe_media,
    read_frames,
    rgb_to_gray,
    write_video,
)

H, W, T = 48, 64, 6


def _ramp_frames(n: int = T, h: int = H, w: int = W) -> np.ndarray:
    """Smooth frames spanning the full 0-255 range, so a range error shows."""
    x = np.linspace(0, 255, w)[None, :]
    y = np.linspace(0, 60, h)[:, None]
    return np.stack([np.clip(x + y * np.sin(i), 0, 255) for i in range(n)]).astype(np.uint8)


def _noise_frames(n: int = T, h: int = H, w: int = W, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w), dtype=np.uint8)


def _rgb_frames(n: int = T, seed: int = 1) -> np.ndarray:
    """Smooth colour frames (lossy codecs keep them close)."""
    rng = np.random.default_rng(seed)
    base = np.stack(np.meshgrid(np.linspace(0, 1, W), np.linspace(0, 1, H)), -1)
    out = []
    for _ in range(n):
        a, b, c = rng.uniform(40, 215, 3)
        rgb = np.stack([a + 40 * base[..., 0], b - 40 * base[..., 1], c + 30 * base.sum(-1)], -1)
        out.append(np.clip(rgb, 0, 255))
    return np.stack(out).astype(np.uint8)


def _encode(path: Path, frames: np.ndarray, codec: str, pix_fmt: str, src: str = "gray") -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = pix_fmt
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format=src)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int32) - b.astype(np.int32)).mean())


# --- video ------------------------------------------------------------------


def test_x264_yuv420p_round_trip_restores_full_range(tmp_path: Path) -> None:
    frames = _ramp_frames()
    path = write_video(tmp_path / "a.mp4", frames, 25.0)
    out, fps = read_frames(path)
    assert out.shape == frames.shape and out.dtype == np.uint8
    assert fps == 25.0
    # Reading the limited-range Y plane without stretching is ~8 levels off.
    assert _mad(out, frames) < 1.5
    assert out.min() <= 3 and out.max() >= 250


def test_probe_and_timestamps(tmp_path: Path) -> None:
    path = write_video(tmp_path / "a.mp4", _ramp_frames(), 20.0)
    assert probe_media(path) == MediaInfo("video", T, 20.0, W, H)
    frames = list(iter_frames(path))
    assert [f.index for f in frames] == list(range(T))
    assert [f.t for f in frames] == pytest.approx([i / 20.0 for i in range(T)])
    assert isinstance(frames[0], MediaFrame)
    assert len(list(iter_frames(path, max_frames=2))) == 2
    assert read_frames(path, max_frames=0)[0].shape == (0, H, W)


def test_ffv1_gray_mkv_is_exact(tmp_path: Path) -> None:
    frames = _noise_frames()
    out, _ = read_frames(write_video(tmp_path / "a.mkv", frames, 25.0, codec="ffv1"))
    np.testing.assert_array_equal(out, frames)
    assert probe_media(tmp_path / "a.mkv").n_frames is None  # Matroska does not say


def test_ffv1_bgr_video_converts_with_bt601(tmp_path: Path) -> None:
    bgr = _rgb_frames()[..., ::-1].copy()
    out, _ = read_frames(write_video(tmp_path / "c.mkv", list(bgr), 25.0, codec="ffv1"))
    np.testing.assert_array_equal(out, rgb_to_gray(bgr, bgr=True))


def test_mjpeg_avi(tmp_path: Path) -> None:
    frames = _ramp_frames()
    out, fps = read_frames(_encode(tmp_path / "m.avi", frames, "mjpeg", "yuvj420p"))
    assert out.shape == frames.shape and fps == 25.0
    assert _mad(out, frames) < 1.5  # full range (yuvj): no stretching


@pytest.mark.parametrize(
    ("codec", "pix_fmt", "exact"), [("ffv1", "gray", True), ("ffv1", "yuv420p", False)]
)
def test_odd_size_with_line_padding(tmp_path: Path, codec: str, pix_fmt: str, exact: bool) -> None:
    frames = _ramp_frames(h=47, w=61) if not exact else _noise_frames(h=47, w=61)
    out, _ = read_frames(_encode(tmp_path / "odd.mkv", frames, codec, pix_fmt))
    assert out.shape == (T, 47, 61)
    if exact:
        np.testing.assert_array_equal(out, frames)
    else:
        assert _mad(out, frames) < 1.0


def test_x264_gray_400_reads_luma_unstretched(tmp_path: Path) -> None:
    frames = _ramp_frames()
    try:
        path = _encode(tmp_path / "g.mp4", frames, "libx264", "gray")
    except (av.FFmpegError, ValueError) as exc:
        pytest.skip(f"this libx264 cannot encode 4:0:0 gray: {exc}")
    with av.open(str(path)) as container:
        decoded_fmt = next(container.decode(video=0)).format.name
    out, _ = read_frames(path)
    # FFmpeg hands 4:0:0 back as untagged yuv420p; stretching it as TV range
    # would clip both ends of the ramp.
    assert decoded_fmt == "yuv420p"
    assert _mad(out, frames) < 1.5
    assert out.max() >= 250 and out.min() <= 3


def test_x264_gray_400_in_annex_b_stream(tmp_path: Path) -> None:
    frames = _ramp_frames()
    path = _encode(tmp_path / "g.h264", frames, "libx264", "gray")
    out, _ = read_frames(path)  # no extradata: the SPS is found in the first packet
    assert _mad(out, frames) < 1.5


def test_truncated_mkv_yields_good_frames_and_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    frames = _noise_frames(n=10)
    data = write_video(tmp_path / "a.mkv", frames, 25.0, codec="ffv1").read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING, logger="pivh_live.media"):
        out, _ = read_frames(cut)
    assert 2 <= len(out) < 10
    np.testing.assert_array_equal(out, frames[: len(out)])
    assert "truncated" in caplog.text


def test_truncated_mp4_without_index_is_media_error(tmp_path: Path) -> None:
    data = write_video(tmp_path / "a.mp4", _ramp_frames(), 25.0).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 3 // 4])  # the moov index sits at the end
    with pytest.raises(MediaError, match=r"cut\.mp4.*complete"):
        read_frames(cut)


@pytest.mark.parametrize("content", [b"", b"not a video at all\n" * 50, bytes(range(256)) * 40])
def test_corrupt_or_empty_video_is_media_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.mp4"
    path.write_bytes(content)
    with pytest.raises(MediaError, match=r"bad\.mp4"):
        list(iter_frames(path))


def test_missing_path_is_media_error(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="does not exist"):
        probe_media(tmp_path / "nope.mp4")
    with pytest.raises(MediaError, match="does not exist"):
        next(iter(iter_frames(tmp_path / "nope.dcm")))


# --- image folders ------------------------------------------------------------


def test_image_folder_natural_order_and_skips_non_images(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "clip"
    folder.mkdir()
    frames = _noise_frames(n=12)
    for i, image in enumerate(frames):
        ext = ("png", "bmp", "tif")[i % 3]
        Image.fromarray(image).save(folder / f"img{i}.{ext}")
    (folder / "notes.txt").write_text("operator notes")
    with caplog.at_level(logging.WARNING, logger="pivh_live.media"):
        out, fps = read_frames(folder)
    np.testing.assert_array_equal(out, frames)  # img2 before img10
    assert fps == 25.0
    assert "notes.txt" in caplog.text
    assert media_kind(folder) == "images"
    assert probe_media(folder) == MediaInfo("images", 12, 25.0, W, H)


def test_image_folder_colour_16bit_and_fps_file(tmp_path: Path) -> None:
    folder = tmp_path / "clip"
    folder.mkdir()
    rgb = _rgb_frames(n=2)
    Image.fromarray(rgb[0]).save(folder / "a1.png")
    Image.fromarray(rgb[1]).save(folder / "a2.jpg", quality=98)
    deep = (_ramp_frames(n=1)[0].astype(np.uint16) * 257).astype(np.uint16)
    Image.fromarray(deep).save(folder / "a3.png")
    (folder / "fps.txt").write_text("12.5\n")
    out, fps = read_frames(folder)
    assert fps == 12.5
    np.testing.assert_array_equal(out[0], rgb_to_gray(rgb[0]))
    assert _mad(out[1], rgb_to_gray(rgb[1])) < 2.0
    np.testing.assert_array_equal(out[2], _ramp_frames(n=1)[0])


def test_image_folder_unreadable_image_names_file(tmp_path: Path) -> None:
    folder = tmp_path / "clip"
    folder.mkdir()
    Image.fromarray(_noise_frames(n=1)[0]).save(folder / "f1.png")
    (folder / "f2.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(MediaError, match=r"f2\.png"):
        read_frames(folder)


def test_image_folder_size_mismatch_and_empty(tmp_path: Path) -> None:
    folder = tmp_path / "clip"
    folder.mkdir()
    with pytest.raises(MediaError, match="no png"):
        probe_media(folder)
    Image.fromarray(np.zeros((H, W), np.uint8)).save(folder / "f1.png")
    Image.fromarray(np.zeros((H, W + 2), np.uint8)).save(folder / "f2.png")
    with pytest.raises(MediaError, match=r"f2\.png.*one size"):
        read_frames(folder)
    (folder / "fps.txt").write_text("fast")
    with pytest.raises(MediaError, match=r"fps\.txt"):
        probe_media(folder)


# --- DICOM ------------------------------------------------------------------


def _dicom(
    path: Path,
    pixels: np.ndarray | bytes,
    *,
    rows: int = H,
    cols: int = W,
    n_frames: int = 1,
    photometric: str = "MONOCHROME2",
    samples: int = 1,
    bits: int = 8,
    ts: str = ExplicitVRLittleEndian,
    **elements: object,
) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ts
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "US"
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 8 if bits <= 8 else 16
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits - 1, 0
    if samples == 3:
        ds.PlanarConfiguration = 0
    if n_frames > 1:
        ds.NumberOfFrames = n_frames
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    if isinstance(pixels, np.ndarray):
        pixels = pixels.tobytes()
    if len(pixels) % 2:
        pixels += b"\0"
    ds.PixelData = pixels
    ds["PixelData"].VR = "OB" if bits <= 8 else "OW"
    ds.save_as(path, enforce_file_format=True)
    return path


def test_dicom_monochrome2_multiframe_with_frame_time(tmp_path: Path) -> None:
    frames = _noise_frames()
    path = _dicom(tmp_path / "cine.dcm", frames, n_frames=T, FrameTime=40.0)
    assert media_kind(path) == "dicom"
    assert probe_media(path) == MediaInfo("dicom", T, 25.0, W, H)
    out, fps = read_frames(path)
    np.testing.assert_array_equal(out, frames)
    assert fps == 25.0
    assert [f.t for f in iter_frames(path, max_frames=3)] == pytest.approx([0, 0.04, 0.08])


def test_dicom_detected_by_preamble_and_cine_rate(tmp_path: Path) -> None:
    frames = _noise_frames(n=3)
    path = _dicom(tmp_path / "IM0001", frames, n_frames=3, CineRate=30)
    assert media_kind(path) == "dicom"
    out, fps = read_frames(path)
    np.testing.assert_array_equal(out, frames)
    assert fps == 30.0


def test_dicom_single_frame_monochrome1_is_inverted(tmp_path: Path) -> None:
    frame = _noise_frames(n=1)[0]
    out, _ = read_frames(_dicom(tmp_path / "m1.dcm", frame, photometric="MONOCHROME1"))
    np.testing.assert_array_equal(out, (255 - frame)[None])


def test_dicom_12bit_uses_window_then_min_max(tmp_path: Path) -> None:
    raw = np.random.default_rng(3).integers(0, 4096, (2, H, W)).astype(np.uint16)
    windowed = _dicom(
        tmp_path / "w.dcm", raw, n_frames=2, bits=12, WindowCenter=2048, WindowWidth=1024
    )
    out, _ = read_frames(windowed)
    expect = np.clip(np.rint(((raw - 2047.5) / 1023 + 0.5) * 255), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(out, expect)
    out, _ = read_frames(_dicom(tmp_path / "mm.dcm", raw, n_frames=2, bits=12))
    lo, hi = raw.min(), raw.max()  # one range for the whole cine, not per frame
    expect = np.rint((raw - lo) * (255.0 / (hi - lo))).astype(np.uint8)
    np.testing.assert_array_equal(out, expect)


def test_dicom_palette_color(tmp_path: Path) -> None:
    idx = _noise_frames(n=2)
    lut = np.random.default_rng(4).integers(0, 65536, (3, 256)).astype(np.uint16)
    luts = {f"{c}PaletteColorLookupTableDescriptor": [256, 0, 16] for c in ("Red", "Green", "Blue")}
    luts |= {
        f"{c}PaletteColorLookupTableData": lut[i].tobytes()
        for i, c in enumerate(("Red", "Green", "Blue"))
    }
    path = _dicom(tmp_path / "p.dcm", idx, n_frames=2, photometric="PALETTE COLOR", **luts)
    out, _ = read_frames(path)
    rgb8 = np.clip(np.rint(lut.T / 65535 * 255), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(out, rgb_to_gray(rgb8[idx]))


def test_dicom_rgb(tmp_path: Path) -> None:
    rgb = _rgb_frames(n=2)
    out, _ = read_frames(_dicom(tmp_path / "c.dcm", rgb, n_frames=2, photometric="RGB", samples=3))
    np.testing.assert_array_equal(out, rgb_to_gray(rgb))


def test_dicom_ybr_full_and_422(tmp_path: Path) -> None:
    rgb = _rgb_frames(n=2)
    # convert_color_space works in place
    ybr = convert_color_space(rgb.copy(), "RGB", "YBR_FULL", per_frame=True)
    full = _dicom(tmp_path / "y.dcm", ybr, n_frames=2, photometric="YBR_FULL", samples=3)
    out, _ = read_frames(full)
    assert _mad(out, rgb_to_gray(rgb)) < 1.0
    # 4:2:2 native layout: Y0 Y1 Cb Cr for each horizontal pixel pair.
    y = ybr[..., 0].reshape(2, H, W // 2, 2)
    chroma = ybr[..., 1:].reshape(2, H, W // 2, 2, 2).mean(axis=3).round().astype(np.uint8)
    packed = np.concatenate([y, chroma], axis=-1)
    sub = _dicom(tmp_path / "y422.dcm", packed, n_frames=2, photometric="YBR_FULL_422", samples=3)
    out, _ = read_frames(sub)
    assert _mad(out, rgb_to_gray(rgb)) < 1.5


def _jpeg(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def test_dicom_jpeg_baseline_gray_and_colour(tmp_path: Path) -> None:
    gray = _ramp_frames(n=3)
    data = encapsulate([_jpeg(f) for f in gray])
    path = _dicom(tmp_path / "j.dcm", data, n_frames=3, ts=JPEGBaseline8Bit)
    out, _ = read_frames(path)
    assert out.shape == gray.shape and _mad(out, gray) < 1.5
    rgb = _rgb_frames(n=2)
    data = encapsulate([_jpeg(f) for f in rgb])
    path = _dicom(
        tmp_path / "jc.dcm",
        data,
        n_frames=2,
        photometric="YBR_FULL_422",
        samples=3,
        ts=JPEGBaseline8Bit,
    )
    out, _ = read_frames(path)
    assert _mad(out, rgb_to_gray(rgb)) < 2.0


def test_dicom_without_decoder_names_syntax_and_install(tmp_path: Path) -> None:
    from pydicom.pixels import get_decoder

    if get_decoder(JPEGLSLossless).is_available:
        pytest.skip("a JPEG-LS decoder is installed here")
    path = _dicom(tmp_path / "ls.dcm", encapsulate([b"\xff\xd8fake"]), ts=JPEGLSLossless)
    with pytest.raises(MediaError, match=r"JPEG-LS.*pip install"):
        read_frames(path)


def test_dicom_h264_video_syntax_decodes_with_pyav(tmp_path: Path) -> None:
    frames = _ramp_frames()
    buf = io.BytesIO()
    with av.open(buf, "w", format="h264") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="gray")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    path = _dicom(
        tmp_path / "v.dcm",
        encapsulate([buf.getvalue()], has_bot=False),
        n_frames=T,
        photometric="YBR_PARTIAL_420",
        samples=3,
        ts=MPEG4HP41,
        FrameTime=40.0,
    )
    out, fps = read_frames(path)
    assert out.shape == frames.shape and fps == 25.0
    assert _mad(out, frames) < 1.5


def test_dicom_without_pixel_data(tmp_path: Path) -> None:
    path = _dicom(tmp_path / "sr.dcm", b"")
    import pydicom

    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path)
    with pytest.raises(MediaError, match=r"sr\.dcm has no pixel data"):
        read_frames(path)


def test_dicom_not_dicom_and_truncated(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    fake = tmp_path / "fake.dcm"
    fake.write_text("hello")
    with pytest.raises(MediaError, match=r"fake\.dcm"):
        read_frames(fake)
    frames = _noise_frames()
    data = _dicom(tmp_path / "t.dcm", frames, n_frames=T).read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[: len(data) - 3 * H * W])
    with caplog.at_level(logging.WARNING, logger="pivh_live.media"):
        out, _ = read_frames(cut)
    np.testing.assert_array_equal(out, frames[:3])  # the complete frames survive
    assert "stopped after 3 frames" in caplog.text
    cut.write_bytes(data[: len(data) - T * H * W + 10])
    with pytest.raises(MediaError, match=r"cut\.dcm"):
        read_frames(cut)


@pytest.mark.parametrize("modality", ["CT", "MR", "CR"])
def test_dicom_of_another_modality_is_refused_in_one_line(tmp_path: Path, modality: str) -> None:
    path = _dicom(tmp_path / "ct.dcm", _noise_frames()[0], Modality=modality)
    with pytest.raises(MediaError, match=rf"ct\.dcm is a {modality} image, not ultrasound") as e:
        read_frames(path)
    assert "\n" not in str(e.value)


def test_dicom_secondary_capture_is_accepted(tmp_path: Path) -> None:
    frame = _noise_frames()[0]
    out, _ = read_frames(_dicom(tmp_path / "sc.dcm", frame, Modality="OT"))
    np.testing.assert_array_equal(out[0], frame)
