"""ZeroMQ transport between pipeline processes; the only module that opens sockets.

A message is two parts: a small UTF-8 JSON header and the raw bytes of one
C-contiguous array, sent zero-copy and never pickled. The format, socket
patterns and the traps avoided here are described in docs/transport.md.

Two delivery modes: ``FramePublisher`` -> ``LatestSubscriber`` for live
consumers that only want the newest frame (drops are counted, never queued up),
and ``ReliablePusher`` -> ``ReliablePuller`` for the recorder, which must get
every frame. Every socket closes with linger=0.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import stat
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any

import numpy as np
import zmq

from pivh_live.errors import PivhError
from pivh_live.frames import Frame

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
MAX_HEADER_BYTES = 64 * 1024
MAX_ARRAY_BYTES = 128 * 1024 * 1024
MAX_NDIM = 4
MAX_STAMPS = 32
_DTYPES: dict[str, np.dtype] = {
    "uint8": np.dtype("|u1"),
    "uint16": np.dtype("<u2"),
    "float32": np.dtype("<f4"),
    "float16": np.dtype("<f2"),
    "int32": np.dtype("<i4"),
    "bool": np.dtype("|b1"),
}
ALLOWED_DTYPES: frozenset[str] = frozenset(_DTYPES)
_NAME_RE = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
_ENDPOINT_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_MAX_INT = 2**63 - 1
_LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]")
_MAX_IPC_PATH = 107  # sun_path is 108 bytes including the NUL
_MAX_DRAIN = 10_000


class TransportError(PivhError):
    """A message or endpoint is malformed, or a peer did not take a message in time."""


@dataclass(frozen=True)
class Counters:
    """Snapshot of one socket's message counts.

    ``received`` counts valid messages handed to the caller; ``dropped`` valid
    messages discarded for a newer one (or refused by a full queue on send);
    ``malformed`` messages rejected by ``decode``.
    """

    sent: int = 0
    received: int = 0
    dropped: int = 0
    malformed: int = 0


def _empty_array() -> np.ndarray:
    return np.empty(0, np.uint8)


@dataclass(frozen=True, eq=False)
class Message:
    """One transported message: header fields plus one array.

    ``stamps`` maps hop names ("capture.send", "infer.recv", ...) to
    ``time.monotonic_ns()`` values; CLOCK_MONOTONIC is system-wide on Linux,
    so stamps from different local processes can be subtracted.
    """

    kind: str
    seq: int
    t_capture_ns: int
    array: np.ndarray = field(default_factory=_empty_array)
    stamps: Mapping[str, int] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_name("kind", self.kind)
        _check_int("seq", self.seq)
        _check_int("t_capture_ns", self.t_capture_ns)
        if not isinstance(self.metadata, Mapping):
            raise TransportError(f"message metadata must be a mapping, got {type(self.metadata)}")
        if not isinstance(self.array, np.ndarray):
            raise TransportError(f"message array must be a numpy array, got {type(self.array)}")
        _dtype_name(self.array.dtype)
        if self.array.ndim > MAX_NDIM or self.array.nbytes > MAX_ARRAY_BYTES:
            raise TransportError(
                f"array {self.array.shape} is too big to send (max {MAX_NDIM} dims, "
                f"{MAX_ARRAY_BYTES} bytes); crop or downscale it first"
            )
        object.__setattr__(self, "stamps", MappingProxyType(_check_stamps(self.stamps)))
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))

    @property
    def dtype(self) -> str:
        return str(self.array.dtype.name)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    def with_stamp(self, name: str, t_ns: int | None = None) -> Message:
        """A copy with one more hop stamp (now, unless ``t_ns`` is given)."""
        stamp = time.monotonic_ns() if t_ns is None else t_ns
        return replace(self, stamps={**self.stamps, name: stamp})

    @classmethod
    def from_frame(cls, frame: Frame, metadata: Mapping[str, Any] | None = None) -> Message:
        meta = {"media_time_s": float(frame.media_time_s), **(metadata or {})}
        return cls("frame", frame.seq, frame.t_capture_ns, frame.image, metadata=meta)

    def to_frame(self) -> Frame:
        media_time = self.metadata.get("media_time_s", 0.0)
        if isinstance(media_time, bool) or not isinstance(media_time, (int, float)):
            raise TransportError(f"frame {self.seq} has a non-numeric media_time_s {media_time!r}")
        return Frame(self.seq, self.t_capture_ns, float(media_time), self.array)


def _check_name(what: str, value: object) -> None:
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
        raise TransportError(f"message {what} {value!r} must match {_NAME_RE.pattern}")


def _check_int(what: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_INT:
        raise TransportError(f"message {what} must be an int in [0, 2**63), got {value!r}")


def _check_stamps(stamps: object) -> dict[str, int]:
    if not isinstance(stamps, Mapping) or len(stamps) > MAX_STAMPS:
        raise TransportError(f"message stamps must be a mapping of at most {MAX_STAMPS} entries")
    for name, value in stamps.items():
        _check_name("stamp name", name)
        _check_int(f"stamp {name}", value)
    return dict(stamps)


def _dtype_name(dtype: np.dtype) -> str:
    name = dtype.name
    if name not in _DTYPES:
        raise TransportError(
            f"dtype {name} cannot be sent; use one of {', '.join(sorted(ALLOWED_DTYPES))}"
        )
    return name


def _check_shape(shape: object) -> tuple[int, ...]:
    if not isinstance(shape, list) or len(shape) > MAX_NDIM:
        raise TransportError(f"header shape must be a list of at most {MAX_NDIM} ints")
    for dim in shape:
        if isinstance(dim, bool) or not isinstance(dim, int) or not 0 <= dim <= MAX_ARRAY_BYTES:
            raise TransportError(f"header shape {shape!r} has a bad dimension {dim!r}")
    return tuple(shape)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed in a header")


def encode(msg: Message, extra_stamps: Mapping[str, int] | None = None) -> list[Any]:
    """[header bytes, C-contiguous array]. The array is not copied (the senders copy)."""
    dtype_name = _dtype_name(msg.array.dtype)
    # Not ascontiguousarray: it turns a 0-d array into 1-d.
    array = msg.array.astype(_DTYPES[dtype_name], order="C", copy=False)
    header = {
        "schema": SCHEMA_VERSION,
        "kind": msg.kind,
        "seq": msg.seq,
        "t_capture_ns": msg.t_capture_ns,
        "stamps": {**msg.stamps, **(extra_stamps or {})},
        "dtype": dtype_name,
        "shape": list(array.shape),
        "meta": dict(msg.metadata),
    }
    try:
        raw = json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise TransportError(f"message {msg.seq} metadata is not plain JSON: {exc}") from None
    if len(raw) > MAX_HEADER_BYTES:
        raise TransportError(f"message {msg.seq} header is {len(raw)} bytes; keep metadata small")
    return [raw, array]


def _as_bytes_view(part: object) -> memoryview:
    try:
        view = part.buffer if isinstance(part, zmq.Frame) else memoryview(part)  # type: ignore[arg-type]
        return view if view.format == "B" and view.ndim == 1 else view.cast("B")
    except (TypeError, ValueError) as exc:
        raise TransportError(f"message part is not a byte buffer: {exc}") from None


def decode(frames: Sequence[Any]) -> Message:
    """Parse [header, buffer]; anything else raises ``TransportError``, never another error.

    The returned array is a read-only view over the received buffer (no copy).
    """
    if len(frames) != 2:
        raise TransportError(f"expected 2 message parts, got {len(frames)}")
    head, body = _as_bytes_view(frames[0]), _as_bytes_view(frames[1])
    if head.nbytes > MAX_HEADER_BYTES:
        raise TransportError(f"header of {head.nbytes} bytes exceeds {MAX_HEADER_BYTES}")
    try:
        header = json.loads(head.tobytes().decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise TransportError(f"header is not UTF-8 JSON ({type(exc).__name__})") from None
    if not isinstance(header, dict):
        raise TransportError(f"header must be a JSON object, got {type(header).__name__}")
    version = header.get("schema")
    if isinstance(version, bool) or version != SCHEMA_VERSION:
        raise TransportError(f"unknown schema version {version!r}; this reader speaks 1")
    dtype = header.get("dtype")
    if not isinstance(dtype, str) or dtype not in _DTYPES:
        raise TransportError(f"header dtype {dtype!r} is not one of {sorted(ALLOWED_DTYPES)}")
    shape = _check_shape(header.get("shape"))
    nbytes = math.prod(shape) * _DTYPES[dtype].itemsize
    if nbytes > MAX_ARRAY_BYTES:
        raise TransportError(f"header shape {list(shape)} declares {nbytes} bytes; too big")
    if nbytes != body.nbytes:
        raise TransportError(f"header declares {nbytes} bytes but the buffer has {body.nbytes}")
    array = np.frombuffer(body, dtype=_DTYPES[dtype]).reshape(shape)
    # Over inproc the buffer is the sender's memory: never let a reader write to it.
    array.flags.writeable = False
    return Message(
        kind=header.get("kind"),  # type: ignore[arg-type]
        seq=header.get("seq"),  # type: ignore[arg-type]
        t_capture_ns=header.get("t_capture_ns"),  # type: ignore[arg-type]
        array=array,
        stamps=header.get("stamps", {}),
        metadata=_check_meta(header.get("meta", {})),
    )


def _check_meta(meta: object) -> Mapping[str, Any]:
    if not isinstance(meta, dict):
        raise TransportError(f"header meta must be a JSON object, got {type(meta).__name__}")
    return meta


# --- endpoints ---------------------------------------------------------------------


def runtime_dir(base: Path | None = None) -> Path:
    """Private directory for ipc sockets: ``$XDG_RUNTIME_DIR/pivh-live-<uid>`` or under /tmp.

    Created with mode 0700; an existing one must be a real directory owned by
    this user with no group/other permissions, else ``TransportError``.
    """
    if base is None:
        xdg = os.environ.get("XDG_RUNTIME_DIR")
        base = Path(xdg) if xdg and Path(xdg).is_dir() else Path("/tmp")
    path = Path(base) / f"pivh-live-{os.getuid()}"
    try:
        path.mkdir(mode=0o700)
        os.chmod(path, 0o700)  # mkdir's mode is masked by the umask
    except FileExistsError:
        pass
    except OSError as exc:
        raise TransportError(f"cannot create socket directory {path}: {exc.strerror}") from None
    check_private_dir(path, os.getuid())
    return path


def check_private_dir(path: Path, uid: int) -> None:
    """Refuse a socket directory another user could have planted or can write into."""
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise TransportError(f"socket directory {path} is not a directory; remove it")
    if info.st_uid != uid:
        raise TransportError(
            f"socket directory {path} is owned by uid {info.st_uid}, not {uid}; "
            "remove it or set XDG_RUNTIME_DIR"
        )
    if info.st_mode & 0o077:
        mode = stat.S_IMODE(info.st_mode)
        raise TransportError(f"socket directory {path} has mode {mode:o}; run chmod 700 {path}")


def endpoint(name: str, *, tcp_port: int | None = None, base: Path | None = None) -> str:
    """``ipc://<runtime_dir>/<name>.sock``, or ``tcp://127.0.0.1:<port>`` when a port is given."""
    if not _ENDPOINT_NAME_RE.fullmatch(name):
        raise TransportError(f"endpoint name {name!r} must match {_ENDPOINT_NAME_RE.pattern}")
    if tcp_port is not None:
        if not 0 < tcp_port < 65536:
            raise TransportError(f"tcp port {tcp_port} must be in 1-65535")
        return f"tcp://127.0.0.1:{tcp_port}"
    path = runtime_dir(base) / f"{name}.sock"
    if len(os.fsencode(path)) > _MAX_IPC_PATH:
        raise TransportError(f"socket path {path} is too long; set a shorter XDG_RUNTIME_DIR")
    return f"ipc://{path}"


def _check_endpoint(address: str, allow_remote: bool) -> None:
    scheme, sep, rest = address.partition("://")
    if not sep or scheme not in ("ipc", "tcp", "inproc") or not rest:
        raise TransportError(f"endpoint {address!r} must be ipc://, tcp:// or inproc://")
    if scheme == "tcp" and not allow_remote:
        host = rest.rsplit(":", 1)[0]
        if host not in _LOCAL_HOSTS:
            raise TransportError(
                f"endpoint {address} is reachable from other machines; use tcp://127.0.0.1 "
                "or allow remote access explicitly"
            )


class _Socket:
    """One zmq socket with counters; a context manager that closes with linger=0."""

    def __init__(
        self,
        kind: int,
        address: str,
        *,
        bind: bool,
        name: str,
        context: zmq.Context | None,
        allow_remote: bool,
        options: Sequence[tuple[int, int]],
    ) -> None:
        _check_endpoint(address, allow_remote)
        _check_name("socket name", name)
        self.address = address
        self.name = name
        self._sent = self._received = self._dropped = self._malformed = 0
        self._sock = (context or zmq.Context.instance()).socket(kind)
        self._sock.setsockopt(zmq.LINGER, 0)
        try:
            for option, value in options:
                self._sock.setsockopt(option, value)
            (self._sock.bind if bind else self._sock.connect)(address)
        except zmq.ZMQError as exc:
            self._sock.close(linger=0)
            verb = "bind" if bind else "connect"
            raise TransportError(
                f"cannot {verb} {address}: {exc}; is another pivh-live process using it?"
            ) from None
        self._poller = zmq.Poller()
        self._poller.register(self._sock, zmq.POLLIN)

    @property
    def counters(self) -> Counters:
        return Counters(self._sent, self._received, self._dropped, self._malformed)

    def close(self) -> None:
        if not self._sock.closed:
            self._sock.close(linger=0)

    def __enter__(self) -> _Socket:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _send(self, msg: Message, flags: int) -> zmq.MessageTracker:
        header, array = encode(msg, {f"{self.name}.send": time.monotonic_ns()})
        # zmq reads a zero-copy buffer later, from its I/O thread: send a private
        # copy so the caller may overwrite its own array as soon as send() returns.
        body = np.array(array, order="C", copy=True)
        return self._sock.send_multipart([header, body], flags=flags, copy=False, track=True)

    def _take_nowait(self) -> Message | None:
        """Next queued message, None if it was malformed; raises zmq.Again if none is queued."""
        first = self._sock.recv(zmq.NOBLOCK, copy=False)
        parts = [first]
        # Consume every part (delivery is atomic) but keep at most 3, so a peer
        # cannot make us hold a million-part message.
        while self._sock.getsockopt(zmq.RCVMORE):
            part = self._sock.recv(copy=False)
            if len(parts) < 3:
                parts.append(part)
        try:
            return decode(parts)
        except TransportError as exc:
            self._malformed += 1
            if self._malformed == 1 or self._malformed % 100 == 0:
                logger.warning(
                    "skipped malformed message on %s (%d so far): %s",
                    self.address,
                    self._malformed,
                    exc,
                )
            return None

    def _recv_valid(self, timeout_ms: int | None) -> Message | None:
        """First valid message within the timeout (None: wait forever), skipping malformed ones."""
        deadline = None if timeout_ms is None else time.monotonic() + timeout_ms / 1000
        skipped = 0
        while True:
            remaining = (
                None
                if deadline is None
                else max(0, math.ceil(1000 * (deadline - time.monotonic())))
            )
            if not self._poller.poll(remaining):
                return None
            try:
                msg = self._take_nowait()
            except zmq.Again:
                msg = None
            if msg is not None:
                return msg
            skipped += 1
            # A flood of malformed messages must not hold us long past the timeout.
            if deadline is not None and skipped >= _MAX_DRAIN and time.monotonic() >= deadline:
                return None


class FramePublisher(_Socket):
    """XPUB socket for live consumers: never blocks; a slow subscriber loses frames."""

    def __init__(
        self,
        address: str,
        *,
        sndhwm: int = 2,
        bind: bool = True,
        name: str = "pub",
        context: zmq.Context | None = None,
        allow_remote: bool = False,
    ) -> None:
        options = [(zmq.SNDHWM, sndhwm), (zmq.XPUB_VERBOSE, 1)]
        super().__init__(
            zmq.XPUB,
            address,
            bind=bind,
            name=name,
            context=context,
            allow_remote=allow_remote,
            options=options,
        )
        self._subscriptions = 0

    def __enter__(self) -> FramePublisher:
        return self

    @property
    def subscriptions(self) -> int:
        """Subscriptions seen so far (each subscriber counts once per subscribe)."""
        self._read_subscriptions()
        return self._subscriptions

    def _read_subscriptions(self) -> None:
        while True:
            try:
                event = self._sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if event[:1] == b"\x01":
                self._subscriptions += 1

    def wait_for_subscriber(self, timeout_s: float, count: int = 1) -> bool:
        """Wait until ``count`` subscriptions have arrived; False on timeout. No sleeping."""
        deadline = time.monotonic() + timeout_s
        while True:
            self._read_subscriptions()
            if self._subscriptions >= count:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._poller.poll(math.ceil(remaining * 1000))

    def send(self, msg: Message) -> None:
        # Reading also makes libzmq process pending commands, among them "the
        # subscriber has read, its pipe has room again"; without it a burst of
        # sends right after a drain can all be dropped.
        self._read_subscriptions()
        try:
            self._send(msg, zmq.NOBLOCK)
        except zmq.Again:
            self._dropped += 1
            return
        self._sent += 1


class LatestSubscriber(_Socket):
    """SUB socket that returns only the newest queued message (newest-wins).

    Not CONFLATE: libzmq's conflate keeps one *part* and breaks multipart
    messages. Small HWMs bound the queue; ``recv_latest`` drains it.
    """

    def __init__(
        self,
        address: str,
        *,
        rcvhwm: int = 2,
        bind: bool = False,
        name: str = "sub",
        context: zmq.Context | None = None,
        allow_remote: bool = False,
    ) -> None:
        options = [(zmq.RCVHWM, rcvhwm), (zmq.MAXMSGSIZE, MAX_ARRAY_BYTES)]
        super().__init__(
            zmq.SUB,
            address,
            bind=bind,
            name=name,
            context=context,
            allow_remote=allow_remote,
            options=options,
        )
        self._sock.setsockopt(zmq.SUBSCRIBE, b"")

    def __enter__(self) -> LatestSubscriber:
        return self

    def recv_latest(self, timeout_ms: int | None) -> Message | None:
        """Newest valid message: wait up to ``timeout_ms`` for one, then drain the queue."""
        msg = self._recv_valid(timeout_ms)
        if msg is None:
            return None
        for _ in range(_MAX_DRAIN):
            try:
                newer = self._take_nowait()
            except zmq.Again:
                break
            if newer is not None:
                self._dropped += 1
                msg = newer
        self._received += 1
        return msg.with_stamp(f"{self.name}.recv")


class ReliablePusher(_Socket):
    """PUSH socket for consumers that need every frame; ``send`` blocks up to a timeout."""

    def __init__(
        self,
        address: str,
        *,
        sndhwm: int = 64,
        send_timeout_ms: int = 2000,
        bind: bool = True,
        name: str = "push",
        context: zmq.Context | None = None,
        allow_remote: bool = False,
    ) -> None:
        options = [(zmq.SNDHWM, sndhwm), (zmq.SNDTIMEO, send_timeout_ms)]
        super().__init__(
            zmq.PUSH,
            address,
            bind=bind,
            name=name,
            context=context,
            allow_remote=allow_remote,
            options=options,
        )
        # Track every part, however small, so flush() knows when the last one left.
        self._sock.copy_threshold = 0
        self._timeout_ms = send_timeout_ms
        self._last: zmq.MessageTracker | None = None

    def __enter__(self) -> ReliablePusher:
        return self

    def send(self, msg: Message) -> None:
        """Queue one message; ``TransportError`` if the receiver does not take it in time."""
        try:
            self._last = self._send(msg, 0)
        except zmq.Again:
            self._dropped += 1
            raise TransportError(
                f"no receiver on {self.address} took message {msg.seq} within "
                f"{self._timeout_ms} ms; is the recorder running and keeping up?"
            ) from None
        self._sent += 1

    def flush(self, timeout_s: float) -> bool:
        """Wait until zmq has handed the last sent message to the OS; False on timeout.

        Call before ``close()``: linger=0 discards whatever is still queued.
        """
        if self._last is None:
            return True
        try:
            self._last.wait(timeout_s)
        except zmq.NotDone:
            return False
        return True


class ReliablePuller(_Socket):
    """PULL socket paired with ``ReliablePusher``."""

    def __init__(
        self,
        address: str,
        *,
        rcvhwm: int = 64,
        bind: bool = False,
        name: str = "pull",
        context: zmq.Context | None = None,
        allow_remote: bool = False,
    ) -> None:
        options = [(zmq.RCVHWM, rcvhwm), (zmq.MAXMSGSIZE, MAX_ARRAY_BYTES)]
        super().__init__(
            zmq.PULL,
            address,
            bind=bind,
            name=name,
            context=context,
            allow_remote=allow_remote,
            options=options,
        )

    def __enter__(self) -> ReliablePuller:
        return self

    def recv(self, timeout_ms: int | None) -> Message | None:
        """Next valid message in order, or None after ``timeout_ms`` (None: wait forever)."""
        msg = self._recv_valid(timeout_ms)
        if msg is None:
            return None
        self._received += 1
        return msg.with_stamp(f"{self.name}.recv")
