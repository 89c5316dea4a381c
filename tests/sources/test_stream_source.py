"""Network streams over loopback UDP: a PyAV sender thread, the stream source receives.

Only 127.0.0.1 is used. Every wait is bounded by a timeout and every loop by
a count; the sender paces itself with ``Event.wait`` so it stops at once.
"""

from __future__ import annotations

import socket
import threading
import time
from itertools import pairwise

import av
import numpy as np
import pytest

from pivh_live.errors import SourceError
from pivh_live.frames import Frame
from pivh_live.sources import SourceStatus, open_resilient, open_source

FPS = 25
W, H = 320, 240
BAND = 40  # the left band's gray level encodes the frame index
STEP = 11


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def phantom_like(rng: np.random.Generator, index: int) -> np.ndarray:
    """Speckle in a fan-ish half disc, plus a band whose level is the frame index."""
    yy, xx = np.mgrid[0:H, 0:W]
    fan = np.hypot(xx - W / 2, yy) < H * 0.95
    image = (rng.rayleigh(30.0, (H, W)) * fan).clip(0, 255).astype(np.uint8)
    image[:, :BAND] = 16 + (index % 20) * STEP
    return image


class UdpSender(threading.Thread):
    """Encodes frames with PyAV (mpeg4 in MPEG-TS) to udp://127.0.0.1:port in real time."""

    def __init__(self, port: int, max_frames: int = 250, seed: int = 0) -> None:
        super().__init__(name="udp sender", daemon=True)
        self.port = port
        self.max_frames = max_frames
        self.stop = threading.Event()
        self.sent = 0
        self.rng = np.random.default_rng(seed)

    def run(self) -> None:
        url = f"udp://127.0.0.1:{self.port}?pkt_size=1316"
        with av.open(url, mode="w", format="mpegts") as out:
            stream = out.add_stream("mpeg4", rate=FPS)
            stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
            stream.gop_size = 5  # a receiver that joins late syncs within 0.2 s
            stream.bit_rate = 4_000_000
            while not self.stop.is_set() and self.sent < self.max_frames:
                vf = av.VideoFrame.from_ndarray(phantom_like(self.rng, self.sent), format="gray")
                vf.pts = self.sent
                for packet in stream.encode(vf):
                    out.mux(packet)
                self.sent += 1
                self.stop.wait(1.0 / FPS)

    def halt(self) -> None:
        self.stop.set()
        self.join(5.0)


def band_index(frame: Frame) -> int:
    """The sent frame index modulo 20, read back from the decoded pixels."""
    level = float(frame.image[:, 4 : BAND - 4].mean())
    return round((level - 16) / STEP)


def test_udp_frames_arrive_in_order_with_monotonic_stamps() -> None:
    port = free_udp_port()
    sender = UdpSender(port)
    sender.start()
    try:
        with open_source(f"udp://127.0.0.1:{port}?open_timeout=5&read_timeout=2") as src:
            frames = [src.read() for _ in range(20)]
            info = src.info
    finally:
        sender.halt()
    got = [f for f in frames if f is not None]
    assert len(got) == 20
    assert [f.seq for f in got] == list(range(20))
    stamps = [f.t_capture_ns for f in got]
    assert all(b > a for a, b in pairwise(stamps))
    assert got[0].image.shape == (H, W, 3) and got[0].image.dtype == np.uint8
    times = [f.media_time_s for f in got]
    assert all(b > a for a, b in pairwise(times)), times
    # Pixels match the frame the sender encoded at that time: nothing smeared or reordered.
    sent_index = [round(t * FPS) for t in times]
    assert [band_index(f) for f in got] == [i % 20 for i in sent_index]
    assert (info.width, info.height, info.kind, info.live) == (W, H, "stream", True)
    assert info.fps == pytest.approx(FPS)
    # A live stream is at most a few frames behind the sender.
    assert sender.sent - sent_index[-1] <= 10


def test_no_sender_fails_within_open_timeout() -> None:
    port = free_udp_port()
    t0 = time.monotonic()
    with pytest.raises(SourceError, match=r"cannot open stream udp://127\.0\.0\.1") as exc:
        open_source(f"udp://127.0.0.1:{port}?open_timeout=0.3")
    assert time.monotonic() - t0 < 3.0
    assert "timed out" in str(exc.value) and "\n" not in str(exc.value)


def test_udp_stall_gives_no_signal_then_reconnects() -> None:
    port = free_udp_port()
    sleeps: list[float] = []
    src = open_resilient(
        f"udp://127.0.0.1:{port}?open_timeout=5&read_timeout=1",
        stall_s=0.5,
        poll_s=0.1,
        sleep=sleeps.append,  # the backoff is not what is tested here
    )
    sender = UdpSender(port)
    sender.start()
    items: list[Frame | SourceStatus | None] = []
    try:
        for _ in range(200):  # bounded: about 1.5 s of frames and polls
            item = src.read()
            items.append(item)
            if isinstance(item, Frame) and item.seq == 10:
                sender.halt()
            if isinstance(item, SourceStatus) and item.state == "no_signal":
                break
        lost = items[-1]
        assert isinstance(lost, SourceStatus) and lost.state == "no_signal"
        assert lost.message == "no frame for 0.5 s"
        last_frame = max((x for x in items if isinstance(x, Frame)), key=lambda f: f.seq)
        assert lost.t_ns - last_frame.t_capture_ns >= 500_000_000

        sender = UdpSender(port, seed=1)
        sender.start()
        after: list[Frame | SourceStatus | None] = []
        for _ in range(200):
            item = src.read()
            after.append(item)
            if isinstance(item, Frame):
                break
    finally:
        sender.halt()
        src.close()
    states = [x.state for x in after if isinstance(x, SourceStatus)]
    assert states[0] == "reconnecting" and states[-1] == "signal"
    resumed = after[-1]
    assert isinstance(resumed, Frame) and resumed.seq == last_frame.seq + 1
    assert sleeps and sleeps[0] == 0.5
