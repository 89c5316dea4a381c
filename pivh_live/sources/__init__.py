"""Capture sources behind one interface, chosen by a spec string (docs/sources.md).

    with open_source("v4l2:/dev/video0?width=1920&height=1080&fps=60") as src:
        for frame in src: ...

Spec forms: ``v4l2:DEVICE?...``, a plain path or ``file:PATH?loop=1&pace=...``,
``udp://``, ``rtp://``, ``rtsp://``, ``srt://``, ``tcp://`` URLs, and
``phantom:?seed=...``. Source modules are imported only when their scheme is
used, so a missing optional piece never breaks the others.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Sequence

from pivh_live.sources.base import (
    Clock,
    Sleep,
    Source,
    SourceInfo,
    SourceStats,
    SourceTimeout,
    redact,
)
from pivh_live.sources.resilient import DEFAULT_BACKOFF_S, ResilientSource, SourceStatus
from pivh_live.sources.spec import STREAM_SCHEMES, SourceSpec, parse_spec, valid_forms

__all__ = [
    "REGISTRY",
    "ResilientSource",
    "Source",
    "SourceInfo",
    "SourceSpec",
    "SourceStats",
    "SourceStatus",
    "SourceTimeout",
    "create_source",
    "open_resilient",
    "open_source",
    "parse_spec",
    "redact",
    "register_source",
    "valid_forms",
]

# scheme -> "module:function"; the function takes (SourceSpec, clock=, sleep=).
REGISTRY: dict[str, str] = {
    "v4l2": "pivh_live.sources.v4l2:create",
    "file": "pivh_live.sources.files:create",
    "phantom": "pivh_live.sources.phantom:create",
    **{scheme: "pivh_live.sources.stream:create" for scheme in STREAM_SCHEMES},
}


def register_source(scheme: str, target: str) -> None:
    """Register ``"module:function"`` as the creator for ``scheme``."""
    REGISTRY[scheme] = target


def _creator(scheme: str) -> Callable[..., Source]:
    module_name, _, func = REGISTRY[scheme].partition(":")
    return getattr(importlib.import_module(module_name), func)


def create_source(
    spec: str | SourceSpec, *, clock: Clock = time.monotonic_ns, sleep: Sleep = time.sleep
) -> Source:
    """A source for ``spec``, validated but not opened (no device or socket touched)."""
    parsed = parse_spec(spec) if isinstance(spec, str) else spec
    return _creator(parsed.scheme)(parsed, clock=clock, sleep=sleep)


def open_source(
    spec: str | SourceSpec, *, clock: Clock = time.monotonic_ns, sleep: Sleep = time.sleep
) -> Source:
    """Create and open a source; raises `SourceError`/`MediaError` with a one-line fix."""
    source = create_source(spec, clock=clock, sleep=sleep)
    source.open()
    return source


def open_resilient(
    spec: str,
    *,
    backoff_s: Sequence[float] = DEFAULT_BACKOFF_S,
    stall_s: float = 2.0,
    poll_s: float = 0.25,
    clock: Clock = time.monotonic_ns,
    sleep: Sleep = time.sleep,
) -> ResilientSource:
    """A `ResilientSource` for ``spec``. A bad spec raises now; a missing
    device or silent stream only later shows as NO SIGNAL and is retried."""
    parsed = parse_spec(spec)
    create_source(parsed, clock=clock, sleep=sleep)  # validate options once
    return ResilientSource(
        lambda: create_source(parsed, clock=clock, sleep=sleep),
        backoff_s=backoff_s,
        stall_s=stall_s,
        poll_s=poll_s,
        clock=clock,
        sleep=sleep,
    )
