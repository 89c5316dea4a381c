"""Source spec strings: ``scheme:target?option=value&...``.

Parsing is separate from opening so a bad spec fails at once with a message
that lists the valid forms, before any device or socket is touched.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

from pivh_live.errors import SourceError
from pivh_live.sources.base import redact

STREAM_SCHEMES = ("udp", "rtp", "rtsp", "srt", "tcp")
# Options of ours inside a stream URL; every other query key is FFmpeg's.
STREAM_OPTIONS = ("open_timeout", "read_timeout", "transport")

FORMS = (
    "v4l2:/dev/video0?width=1920&height=1080&fps=60&format=mjpeg|yuyv|nv12",
    "PATH or file:PATH?loop=1&pace=realtime|fast (video file, image folder, DICOM)",
    "udp://HOST:PORT, rtp://HOST:PORT, rtsp://HOST/PATH, srt://HOST:PORT, tcp://HOST:PORT"
    " (?open_timeout=S&read_timeout=S)",
    "phantom:?seed=3&grade=3&screen=1&fps=25",
)


def valid_forms() -> str:
    return "; ".join(FORMS)


@dataclass(frozen=True)
class SourceSpec:
    """A parsed spec. ``target`` is the device, path or URL (stream URLs keep
    FFmpeg's own query options); ``options`` are ours, as raw strings."""

    text: str
    scheme: str
    target: str
    options: Mapping[str, str] = field(default_factory=dict)

    @property
    def redacted(self) -> str:
        return redact(self.text)

    def __repr__(self) -> str:  # never show secrets in logs or tracebacks
        return f"SourceSpec({self.redacted!r})"


def parse_spec(text: str) -> SourceSpec:
    """Split a spec string; raise `SourceError` naming the valid forms."""
    text = text.strip()
    if not text:
        raise SourceError(f"empty source spec; use one of: {valid_forms()}")
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*):(.*)$", text, flags=re.DOTALL)
    if m is None or len(m.group(1)) == 1:  # one letter: a Windows drive, not a scheme
        scheme = "v4l2" if text.startswith("/dev/video") else "file"
        target, options = _split_query(text, text)
        return SourceSpec(text, scheme, target, options)
    scheme, rest = m.group(1).lower(), m.group(2)
    if scheme in STREAM_SCHEMES:
        return _parse_stream(text, scheme)
    if scheme not in ("v4l2", "file", "phantom"):
        raise SourceError(f"unknown source {redact(text)!r}; use one of: {valid_forms()}")
    target, options = _split_query(rest, text)
    if scheme == "file" and target.startswith("//"):
        target = target[2:]  # file:///abs/path
    if scheme == "v4l2":
        target = target or "/dev/video0"
        if target.isdigit():
            target = f"/dev/video{target}"
    if scheme == "file" and not target:
        raise SourceError(f"file: needs a path, e.g. file:clip.mp4 (got {redact(text)!r})")
    return SourceSpec(text, scheme, target, options)


def _split_query(rest: str, text: str) -> tuple[str, dict[str, str]]:
    target, sep, query = rest.partition("?")
    if not sep:
        return target, {}
    return target, _query_dict(query, text)


def _query_dict(query: str, text: str) -> dict[str, str]:
    options: dict[str, str] = {}
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise SourceError(
            f"malformed options in {redact(text)!r}; write ?name=value&name=value"
        ) from None
    for key, value in pairs:
        if key in options:
            raise SourceError(f"option {key!r} given twice in {redact(text)!r}")
        options[key] = value
    return options


def _parse_stream(text: str, scheme: str) -> SourceSpec:
    parts = urlsplit(text)
    if not text[len(scheme) :].startswith("://") or not parts.hostname:
        raise SourceError(f"stream {redact(text)!r} needs a host: {scheme}://HOST:PORT")
    try:
        parts.port  # noqa: B018 - validates the port number
    except ValueError:
        raise SourceError(f"bad port in {redact(text)!r}; use {scheme}://HOST:PORT") from None
    ours: dict[str, str] = {}
    kept: list[str] = []
    # Filter the raw pieces, not decoded pairs, so FFmpeg sees its options byte for byte.
    for piece in parts.query.split("&") if parts.query else []:
        key = unquote(piece.partition("=")[0])
        if key in STREAM_OPTIONS:
            if key in ours:
                raise SourceError(f"option {key!r} given twice in {redact(text)!r}")
            ours[key] = unquote(piece.partition("=")[2])
        else:
            kept.append(piece)
    url = urlunsplit(parts._replace(query="&".join(kept)))
    return SourceSpec(text, scheme, url, ours)


# ---- option conversion -------------------------------------------------------


def take_options(
    spec: SourceSpec, schema: Mapping[str, Callable[[str], Any]], defaults: Mapping[str, Any]
) -> dict[str, Any]:
    """Convert ``spec.options`` with ``schema``; unknown names and bad values raise."""
    values = dict(defaults)
    for key, raw in spec.options.items():
        if key not in schema:
            names = ", ".join(schema) or "no options"
            raise SourceError(
                f"unknown option {key!r} in {spec.redacted!r}; {spec.scheme} sources take: {names}"
            )
        try:
            values[key] = schema[key](raw)
        except ValueError as exc:
            raise SourceError(f"bad value {key}={raw!r} in {spec.redacted!r}: {exc}") from None
    return values


def positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def nonnegative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("must be 0 or more")
    return value


def positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0 or value == float("inf"):
        raise ValueError("must be a positive number")
    return value


def boolean(raw: str) -> bool:
    low = raw.strip().lower()
    if low in ("1", "true", "yes", "on", ""):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be 1 or 0")


def choice(*values: str) -> Callable[[str], str]:
    def convert(raw: str) -> str:
        low = raw.strip().lower()
        if low not in values:
            raise ValueError(f"must be one of {', '.join(values)}")
        return low

    return convert


def unit_float(raw: str) -> float:
    value = float(raw)
    if not 0.0 <= value <= 1.0:
        raise ValueError("must be between 0 and 1")
    return value
