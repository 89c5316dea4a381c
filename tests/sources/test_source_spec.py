"""Spec strings: parsing, option validation, redaction, the registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from pivh_live.errors import SourceError
from pivh_live.sources import (
    REGISTRY,
    create_source,
    open_resilient,
    open_source,
    parse_spec,
    redact,
)
from pivh_live.sources.files import FileSource
from pivh_live.sources.stream import StreamSource, ffmpeg_options
from pivh_live.sources.v4l2 import V4l2Source


@pytest.mark.parametrize(
    ("text", "scheme", "target", "options"),
    [
        ("v4l2:/dev/video0?width=1920&height=1080&fps=60&format=mjpeg", "v4l2", "/dev/video0",
         {"width": "1920", "height": "1080", "fps": "60", "format": "mjpeg"}),
        ("v4l2:2", "v4l2", "/dev/video2", {}),
        ("v4l2:", "v4l2", "/dev/video0", {}),
        ("/dev/video1", "v4l2", "/dev/video1", {}),
        ("clip.mp4", "file", "clip.mp4", {}),
        ("C:/scans/clip.mp4", "file", "C:/scans/clip.mp4", {}),
        ("file:dir/frames?loop=1&pace=fast", "file", "dir/frames", {"loop": "1", "pace": "fast"}),
        ("file:///abs/x.dcm", "file", "/abs/x.dcm", {}),
        ("phantom:?seed=3&grade=3&screen=1&fps=25", "phantom", "",
         {"seed": "3", "grade": "3", "screen": "1", "fps": "25"}),
        ("udp://127.0.0.1:5000?pkt_size=1316&read_timeout=2", "udp",
         "udp://127.0.0.1:5000?pkt_size=1316", {"read_timeout": "2"}),
        ("RTSP://cam.local/live?channel=1&transport=udp", "rtsp",
         "rtsp://cam.local/live?channel=1", {"transport": "udp"}),
        ("srt://10.0.0.2:9000?mode=caller&latency=20000", "srt",
         "srt://10.0.0.2:9000?mode=caller&latency=20000", {}),
    ],
)  # fmt: skip
def test_parse_spec_forms(text: str, scheme: str, target: str, options: dict[str, str]) -> None:
    spec = parse_spec(text)
    assert (spec.scheme, spec.target, dict(spec.options)) == (scheme, target, options)


@pytest.mark.parametrize("text", ["http://x/y", "gopher:thing", "", "   "])
def test_unknown_scheme_names_valid_forms(text: str) -> None:
    with pytest.raises(SourceError) as exc:
        parse_spec(text)
    msg = str(exc.value)
    assert "v4l2:/dev/video0" in msg and "udp://" in msg and "phantom:" in msg
    assert "\n" not in msg


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("v4l2:/dev/video0?widht=640", "unknown option 'widht'"),
        ("v4l2:/dev/video0?width=-5", "width"),
        ("v4l2:/dev/video0?format=h264", "mjpeg, yuyv, nv12"),
        ("v4l2:/dev/video0?fps=abc", "fps"),
        ("file:x.mp4?pace=slow", "realtime, fast"),
        ("file:x.mp4?loop=maybe", "loop"),
        ("file:x.mp4?loop=1&loop=0", "twice"),
        ("udp://127.0.0.1:5000?read_timeout=0", "read_timeout"),
        ("udp://:5000", "needs a host"),
        ("udp://127.0.0.1:99999", "bad port"),
        ("file:", "needs a path"),
    ],
)
def test_bad_options_raise_one_line(text: str, needle: str) -> None:
    with pytest.raises(SourceError) as exc:
        create_source(text)
    assert needle in str(exc.value)
    assert "\n" not in str(exc.value)


def test_create_source_picks_class_without_opening() -> None:
    assert isinstance(create_source("v4l2:/dev/video77?width=640"), V4l2Source)
    assert isinstance(create_source("no/such/file.mp4"), FileSource)
    assert isinstance(create_source("udp://127.0.0.1:5000"), StreamSource)
    assert set(REGISTRY) >= {"v4l2", "file", "phantom", "udp", "rtp", "rtsp", "srt", "tcp"}


def test_missing_device_message(tmp_path: Path) -> None:
    if Path("/dev/video9").exists():
        pytest.skip("/dev/video9 exists on this machine")
    with pytest.raises(SourceError) as exc:
        open_source("v4l2:/dev/video9")
    assert str(exc.value) == (
        "capture device /dev/video9 not found; list devices with "
        "`v4l2-ctl --list-devices` or `ls /dev/video*`"
    )


def test_redaction_hides_passwords_and_keys() -> None:
    text = "rtsp://admin:s3cret@10.1.1.5:554/live?passphrase=abc&token=t0k&channel=2"
    shown = redact(text)
    assert "s3cret" not in shown and "abc" not in shown and "t0k" not in shown
    assert shown == "rtsp://admin:***@10.1.1.5:554/live?passphrase=***&token=***&channel=2"
    spec = parse_spec(text)
    assert "s3cret" not in repr(spec)
    assert "s3cret" not in create_source(spec).info.spec


def test_stream_options_are_low_latency() -> None:
    opts = ffmpeg_options("udp", None)
    assert opts["fflags"] == "nobuffer" and opts["flags"] == "low_delay"
    assert opts["overrun_nonfatal"] == "1"
    assert ffmpeg_options("rtsp", None)["rtsp_transport"] == "tcp"
    assert ffmpeg_options("rtsp", "udp")["rtsp_transport"] == "udp"


def test_open_resilient_rejects_bad_spec_at_once() -> None:
    with pytest.raises(SourceError, match="unknown option"):
        open_resilient("v4l2:/dev/video0?bogus=1")
