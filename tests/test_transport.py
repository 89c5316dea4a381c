"""ZeroMQ transport: message codec, socket patterns, counters, and the traps."""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pivh_live.errors import PivhError
from pivh_live.frames import Frame
from pivh_live.transport import (
    ALLOWED_DTYPES,
    MAX_HEADER_BYTES,
    SCHEMA_VERSION,
    FramePublisher,
    LatestSubscriber,
    Message,
    ReliablePuller,
    ReliablePusher,
    TransportError,
    check_private_dir,
    decode,
    encode,
    endpoint,
    runtime_dir,
)

TIMEOUT_MS = 5000


@pytest.fixture
def base() -> Iterator[Path]:
    # A short path: ipc socket paths are limited to 107 bytes.
    path = Path(tempfile.mkdtemp(prefix="pz-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _gray(seed: int, shape: tuple[int, ...] = (120, 160)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _bgr(seed: int) -> np.ndarray:
    return _gray(seed, (90, 140, 3))


def _frame_msg(seq: int, array: np.ndarray, **meta: Any) -> Message:
    return Message("frame", seq, 1_000_000 + seq, array, metadata=meta)


def _valid_header(**overrides: Any) -> dict[str, Any]:
    header = {
        "schema": SCHEMA_VERSION,
        "kind": "frame",
        "seq": 1,
        "t_capture_ns": 5,
        "stamps": {},
        "dtype": "uint8",
        "shape": [2, 3],
        "meta": {},
    }
    header.update(overrides)
    return header


# --- codec -------------------------------------------------------------------------


def test_encode_decode_roundtrip_keeps_fields_and_is_read_only() -> None:
    image = _bgr(1)
    msg = Message(
        "frame", 7, 123, image, stamps={"capture.grab": 100}, metadata={"media_time_s": 0.25}
    )
    out = decode(encode(msg))
    assert (out.kind, out.seq, out.t_capture_ns) == ("frame", 7, 123)
    assert out.dtype == "uint8" and out.shape == image.shape
    np.testing.assert_array_equal(out.array, image)
    assert dict(out.stamps) == {"capture.grab": 100}
    assert out.metadata["media_time_s"] == 0.25
    assert not out.array.flags.writeable
    frame = out.to_frame()
    assert isinstance(frame, Frame) and frame.media_time_s == 0.25 and frame.seq == 7


def test_encode_makes_non_contiguous_arrays_contiguous() -> None:
    image = _gray(2, (40, 60))[:, ::2]
    out = decode(encode(_frame_msg(0, image)))
    np.testing.assert_array_equal(out.array, image)


@pytest.mark.parametrize(
    ("array", "meta"),
    [
        (np.zeros(3, np.float64), {}),
        (np.zeros(3, np.int64), {}),
        (np.zeros((1, 1, 1, 1, 1), np.uint8), {}),
        (np.zeros(3, np.uint8), {"bad": float("nan")}),
        (np.zeros(3, np.uint8), {"bad": object()}),
        (np.zeros(3, np.uint8), {"big": "x" * MAX_HEADER_BYTES}),
    ],
)
def test_unsendable_messages_raise_transport_error(array: np.ndarray, meta: dict) -> None:
    with pytest.raises(TransportError):
        encode(Message("frame", 0, 0, array, metadata=meta))


@pytest.mark.parametrize(
    "fields",
    [
        {"kind": "Frame!"},
        {"seq": -1},
        {"seq": True},
        {"t_capture_ns": 2**63},
        {"stamps": {"send": 1.5}},
        {"stamps": {"Bad Name": 1}},
        {"metadata": [1, 2]},
    ],
)
def test_message_rejects_bad_fields(fields: dict[str, Any]) -> None:
    args = {"kind": "frame", "seq": 0, "t_capture_ns": 0} | fields
    with pytest.raises(TransportError):
        Message(**args)


def test_transport_error_is_a_pivh_error() -> None:
    assert issubclass(TransportError, PivhError)


@pytest.mark.parametrize(
    "parts",
    [
        [b"{}"],
        [b"{}", b"", b""],
        [b"\xff\xfe", b""],
        [b"not json", b""],
        [b"[1, 2]", b""],
        [b"[" * 60000, b""],
        [b" " * (MAX_HEADER_BYTES + 1), b""],
        [json.dumps(_valid_header(schema=2)).encode(), bytes(6)],
        [json.dumps(_valid_header(schema=True)).encode(), bytes(6)],
        [json.dumps(_valid_header(dtype="float64")).encode(), bytes(48)],
        [json.dumps(_valid_header(dtype="object")).encode(), bytes(6)],
        [json.dumps(_valid_header(shape=[2, -3])).encode(), bytes(6)],
        [json.dumps(_valid_header(shape=[2, 3.0])).encode(), bytes(6)],
        [json.dumps(_valid_header(shape="2x3")).encode(), bytes(6)],
        [json.dumps(_valid_header(shape=[1, 1, 1, 1, 6])).encode(), bytes(6)],
        [json.dumps(_valid_header(shape=[2**40, 2**40])).encode(), bytes(6)],
        [json.dumps(_valid_header()).encode(), bytes(5)],
        [json.dumps(_valid_header(kind=None)).encode(), bytes(6)],
        [json.dumps(_valid_header(seq="1")).encode(), bytes(6)],
        [json.dumps(_valid_header(meta=[])).encode(), bytes(6)],
        [json.dumps(_valid_header(stamps={"x": -1})).encode(), bytes(6)],
        [b'{"schema": NaN}', b""],
        [b'{"seq": 1' + b"1" * 5000 + b"}", b""],
    ],
)
def test_decode_rejects_malformed(parts: list[bytes]) -> None:
    with pytest.raises(TransportError):
        decode(parts)


def test_decode_accepts_the_valid_header_used_above() -> None:
    msg = decode([json.dumps(_valid_header()).encode(), bytes(range(6))])
    assert msg.shape == (2, 3) and msg.array[1, 2] == 5


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
_header_values = st.fixed_dictionaries(
    {},
    optional={
        "schema": st.sampled_from([1, 0, 2, "1", True]) | _json,
        "kind": st.sampled_from(["frame", "result", "", "X"]) | _json,
        "seq": st.integers(-5, 2**64) | _json,
        "t_capture_ns": st.integers(-5, 2**64) | _json,
        "stamps": st.dictionaries(st.text(max_size=6), st.integers(-2, 2**64), max_size=3) | _json,
        "dtype": st.sampled_from([*sorted(ALLOWED_DTYPES), "float64", "<u2", ""]) | _json,
        "shape": st.lists(st.integers(-2, 70), max_size=5) | _json,
        "meta": _json,
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parts=st.lists(st.binary(max_size=200), max_size=4))
def test_random_bytes_only_raise_transport_error(parts: list[bytes]) -> None:
    try:
        msg = decode(parts)
    except TransportError:
        return
    assert isinstance(msg, Message)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(header=_header_values, body=st.binary(max_size=300))
def test_random_headers_only_raise_transport_error(header: dict, body: bytes) -> None:
    try:
        msg = decode([json.dumps(header).encode(), body])
    except TransportError:
        return
    assert msg.array.nbytes == len(body) and not msg.array.flags.writeable


@settings(max_examples=100, deadline=None)
@given(
    array=hnp.arrays(
        dtype=st.sampled_from([np.dtype(name) for name in sorted(ALLOWED_DTYPES)]),
        shape=hnp.array_shapes(min_dims=0, max_dims=4, max_side=6),
    )
)
def test_any_allowed_array_round_trips(array: np.ndarray) -> None:
    out = decode(encode(Message("result", 3, 4, array)))
    assert out.array.dtype == array.dtype and out.shape == array.shape
    np.testing.assert_array_equal(out.array, array)


# --- endpoints ---------------------------------------------------------------------


def test_runtime_dir_is_private(base: Path) -> None:
    path = runtime_dir(base)
    info = os.lstat(path)
    assert path == base / f"pivh-live-{os.getuid()}"
    assert stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == os.getuid()
    assert runtime_dir(base) == path  # an existing private dir is reused
    assert endpoint("frames", base=base) == f"ipc://{path}/frames.sock"


def test_runtime_dir_uses_xdg_runtime_dir(base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(base))
    assert runtime_dir().parent == base


def test_runtime_dir_refuses_open_permissions(base: Path) -> None:
    path = runtime_dir(base)
    path.chmod(0o755)
    with pytest.raises(TransportError, match="chmod 700"):
        runtime_dir(base)


def test_runtime_dir_refuses_a_symlink(base: Path) -> None:
    target = base / "elsewhere"
    target.mkdir(mode=0o700)
    (base / f"pivh-live-{os.getuid()}").symlink_to(target)
    with pytest.raises(TransportError, match="not a directory"):
        runtime_dir(base)


def test_private_dir_check_refuses_another_owner(base: Path) -> None:
    path = runtime_dir(base)
    check_private_dir(path, os.getuid())
    with pytest.raises(TransportError, match="owned by uid"):
        check_private_dir(path, os.getuid() + 1)


def test_endpoint_names_and_tcp() -> None:
    assert endpoint("frames", tcp_port=5555) == "tcp://127.0.0.1:5555"
    for bad in ("../x", "a/b", "", "A"):
        with pytest.raises(TransportError):
            endpoint(bad, tcp_port=5555)
    with pytest.raises(TransportError):
        endpoint("frames", tcp_port=70000)


@pytest.mark.parametrize("address", ["tcp://0.0.0.0:5555", "tcp://*:5555", "tcp://10.0.0.2:5555"])
def test_remote_tcp_needs_explicit_permission(address: str) -> None:
    with pytest.raises(TransportError, match="other machines"):
        FramePublisher(address)


def test_bad_scheme_is_refused() -> None:
    with pytest.raises(TransportError):
        LatestSubscriber("udp://127.0.0.1:1")


# --- sockets -----------------------------------------------------------------------


def test_pub_sub_round_trip_gray_and_bgr_over_ipc(base: Path) -> None:
    address = endpoint("live", base=base)
    with FramePublisher(address, name="cap") as pub, LatestSubscriber(address, name="inf") as sub:
        assert pub.wait_for_subscriber(5.0)
        for seq, image in enumerate([_gray(3), _bgr(4)]):
            pub.send(_frame_msg(seq, image, media_time_s=seq / 30))
            got = sub.recv_latest(TIMEOUT_MS)
            assert got is not None and got.seq == seq
            np.testing.assert_array_equal(got.array, image)
            assert got.metadata["media_time_s"] == seq / 30
            assert got.stamps["cap.send"] <= got.stamps["inf.recv"]
        assert pub.counters.sent == 2
        assert sub.counters.received == 2 and sub.counters.dropped == 0


def test_push_pull_round_trip_gray_and_bgr_over_ipc(base: Path) -> None:
    address = endpoint("rec", base=base)
    images = [_gray(5), _bgr(6)]
    with ReliablePusher(address) as push, ReliablePuller(address) as pull:
        for seq, image in enumerate(images):
            push.send(Message.from_frame(Frame(seq, 10 + seq, seq / 25, image)))
        for seq, image in enumerate(images):
            got = pull.recv(TIMEOUT_MS)
            assert got is not None and got.seq == seq and got.t_capture_ns == 10 + seq
            np.testing.assert_array_equal(got.to_frame().image, image)
        assert pull.recv(0) is None
        assert push.flush(5.0)


def test_wait_for_subscriber_times_out_without_one(base: Path) -> None:
    with FramePublisher(endpoint("lonely", base=base)) as pub:
        assert not pub.wait_for_subscriber(0.05)
        assert pub.subscriptions == 0


def test_wait_for_two_subscribers(base: Path) -> None:
    address = endpoint("two", base=base)
    with FramePublisher(address) as pub, LatestSubscriber(address), LatestSubscriber(address):
        assert pub.wait_for_subscriber(5.0, count=2)


def test_newest_wins_returns_newest_queued_and_counts_drops() -> None:
    # inproc: a send lands in the pipe before it returns, so the queue is exact.
    address = "inproc://newest-wins"
    with FramePublisher(address, sndhwm=8) as pub, LatestSubscriber(address, rcvhwm=8) as sub:
        assert pub.wait_for_subscriber(5.0)
        for seq in range(5):
            pub.send(_frame_msg(seq, np.full(16, seq, np.uint8)))
        got = sub.recv_latest(TIMEOUT_MS)
        assert got is not None and got.seq == 4 and got.array[0] == 4
        assert sub.counters.dropped == 4 and sub.counters.received == 1
        assert sub.recv_latest(0) is None


def test_fast_publisher_slow_subscriber_over_ipc(base: Path) -> None:
    address = endpoint("fast", base=base)
    with FramePublisher(address, sndhwm=2) as pub, LatestSubscriber(address, rcvhwm=2) as sub:
        assert pub.wait_for_subscriber(5.0)
        seen: list[int] = []
        seq = 0
        for _ in range(30):
            for _ in range(10):  # the subscriber keeps up with one frame in ten
                pub.send(_frame_msg(seq, _gray(seq % 3, (64, 64))))
                seq += 1
            got = sub.recv_latest(TIMEOUT_MS)
            assert got is not None
            seen.append(got.seq)
        c = sub.counters
        assert seen == sorted(set(seen))
        assert c.received == 30 and c.dropped > 0 and c.malformed == 0
        assert c.received + c.dropped <= pub.counters.sent == 300


def test_recorder_path_gets_every_frame(base: Path) -> None:
    address = endpoint("every", base=base)
    n = 500
    got: list[Message] = []

    def record() -> None:
        with ReliablePuller(address) as pull:
            while len(got) < n:
                msg = pull.recv(TIMEOUT_MS)
                if msg is None:
                    return
                got.append(msg)

    # A small HWM makes the sender block on the slower reader (back-pressure).
    with ReliablePusher(address, sndhwm=4, send_timeout_ms=TIMEOUT_MS) as push:
        reader = threading.Thread(target=record)
        reader.start()
        for seq in range(n):
            push.send(_frame_msg(seq, np.full((32, 48), seq % 256, np.uint8)))
        assert push.flush(5.0)
        reader.join(10.0)
        assert push.counters.sent == n
    assert [m.seq for m in got] == list(range(n))
    assert all(int(m.array.min()) == int(m.array.max()) == m.seq % 256 for m in got)


def test_pusher_without_receiver_times_out(base: Path) -> None:
    with ReliablePusher(endpoint("nobody", base=base), send_timeout_ms=30) as push:
        with pytest.raises(TransportError, match="recorder"):
            push.send(_frame_msg(0, _gray(0)))
        assert push.counters.dropped == 1 and push.counters.sent == 0


_GARBAGE: list[list[bytes]] = [
    [b"hello"],
    [b"{}", b"", b""],
    [b"\x00\x01not json", b"abc"],
    [json.dumps(_valid_header(dtype="float64")).encode(), bytes(48)],
    [json.dumps(_valid_header()).encode(), bytes(7)],
]


def test_malformed_messages_are_counted_and_skipped_by_puller(base: Path) -> None:
    address = endpoint("bad-pull", base=base)
    with ReliablePuller(address, bind=True) as pull, zmq.Context.instance().socket(zmq.PUSH) as raw:
        raw.setsockopt(zmq.LINGER, 0)
        raw.connect(address)
        for parts in _GARBAGE:
            raw.send_multipart(parts)
        raw.send_multipart(encode(_frame_msg(42, _gray(42))))
        got = pull.recv(TIMEOUT_MS)
        assert got is not None and got.seq == 42
        np.testing.assert_array_equal(got.array, _gray(42))
        assert pull.counters.malformed == len(_GARBAGE) and pull.counters.received == 1


def test_non_blocking_recv_skips_queued_malformed_messages() -> None:
    # inproc: every message is queued before recv(0) runs.
    ctx = zmq.Context.instance()
    with ReliablePuller("inproc://skip", bind=True) as pull, ctx.socket(zmq.PUSH) as raw:
        raw.setsockopt(zmq.LINGER, 0)
        raw.connect("inproc://skip")
        for parts in [*_GARBAGE, encode(_frame_msg(43, _gray(43)))]:
            raw.send_multipart(parts)
        got = pull.recv(0)
        assert got is not None and got.seq == 43
        assert pull.counters.malformed == len(_GARBAGE)
        assert pull.recv(0) is None


def test_malformed_messages_are_counted_and_skipped_by_subscriber(base: Path) -> None:
    address = endpoint("bad-sub", base=base)
    with zmq.Context.instance().socket(zmq.XPUB) as raw:
        raw.setsockopt(zmq.LINGER, 0)
        raw.bind(address)
        with LatestSubscriber(address) as sub:
            assert raw.poll(TIMEOUT_MS) and raw.recv() == b"\x01"
            for parts in _GARBAGE[1:]:  # a SUB filters nothing, but keep whole messages
                raw.send_multipart(parts)
            raw.send_multipart(encode(_frame_msg(7, _bgr(7))))
            got = sub.recv_latest(TIMEOUT_MS)
            assert got is not None and got.seq == 7
            assert sub.counters.malformed == len(_GARBAGE) - 1
            assert sub.counters.dropped == 0


def test_raw_zero_copy_reuse_corrupts_but_our_senders_do_not() -> None:
    # The trap, shown with raw zmq: over inproc a zero-copy frame IS the sender's memory.
    ctx = zmq.Context.instance()
    with ctx.socket(zmq.PUSH) as a, ctx.socket(zmq.PULL) as b:
        a.setsockopt(zmq.LINGER, 0)
        b.setsockopt(zmq.LINGER, 0)
        a.bind("inproc://raw-reuse")
        b.connect("inproc://raw-reuse")
        buf = np.zeros(1 << 18, np.uint8)
        a.send(buf, copy=False)
        buf[:] = 9
        assert np.frombuffer(b.recv(copy=False).buffer, np.uint8)[0] == 9

    # The same reuse through our API: every received frame is what was sent.
    for address in ("inproc://safe-reuse", "ipc"):
        with tempfile.TemporaryDirectory(prefix="pz-", dir="/tmp") as tmp:
            addr = endpoint("reuse", base=Path(tmp)) if address == "ipc" else address
            with ReliablePusher(addr, sndhwm=64) as push, ReliablePuller(addr, rcvhwm=64) as pull:
                buf = np.zeros((512, 512), np.uint8)
                for seq in range(20):
                    buf[:] = seq  # overwrite the array sent one step earlier
                    push.send(_frame_msg(seq, buf))
                buf[:] = 255
                for seq in range(20):
                    got = pull.recv(TIMEOUT_MS)
                    assert got is not None and got.seq == seq
                    assert int(got.array.min()) == int(got.array.max()) == seq
