"""The consumer side of the multi-process pipeline: results (and frames) in, consumers called.

A `ConsumerHost` subscribes to ``results`` (newest-wins), to ``frames``
(newest-wins) when a consumer ``needs_frames``, and to ``status``; ``poll``
waits for one result and calls every consumer's ``on_result(region,
result)`` with the newest region it has. A host that falls behind loses
results rather than lagging: ``dropped`` counts those discarded for a newer
one, ``gaps`` the frame numbers it never saw (also frames the inference
stage skipped). Run one host per process (display, recorder, ...) so each
has its own subscription and its own counts.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from pivh_live.errors import PivhError
from pivh_live.pipeline.config import Endpoints
from pivh_live.pipeline.messages import (
    region_from_message,
    result_from_message,
    status_from_message,
)
from pivh_live.pipeline.results import PipelineStatus, RegionFrame, ResultConsumer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HostStats:
    """What this host has seen: results handed on, dropped by newest-wins, seq gaps."""

    results: int
    dropped: int
    gaps: int
    frames: int
    malformed: int
    last_seq: int | None


class ConsumerHost:
    def __init__(
        self,
        endpoints: Endpoints,
        consumers: Sequence[ResultConsumer],
        *,
        name: str = "consumer",
        subscribe_status: bool = True,
    ) -> None:
        from pivh_live.transport import LatestSubscriber

        self.consumers = list(consumers)
        self.name = name
        self._results = LatestSubscriber(endpoints.results, name=name)
        self._frames = None
        if any(getattr(c, "needs_frames", False) for c in self.consumers):
            self._frames = LatestSubscriber(endpoints.frames, name=f"{name}-frames")
        self._status_sub = (
            LatestSubscriber(endpoints.status, name=f"{name}-status") if subscribe_status else None
        )
        self._region: RegionFrame | None = None
        self._status: PipelineStatus | None = None
        self._last_seq: int | None = None
        self._gaps = 0
        self._results_n = 0
        self._malformed = 0

    def poll(self, timeout_ms: int) -> int:
        """Wait up to ``timeout_ms`` for a result, dispatch it; returns results handed on (0/1)."""
        msg = self._results.recv_latest(timeout_ms)
        self._poll_status()
        self._poll_frames()
        if msg is None:
            return 0
        try:
            result = result_from_message(msg)
        except PivhError as exc:
            self._malformed += 1
            log.warning("skipped a bad result message: %s", exc)
            return 0
        if self._last_seq is not None and result.seq > self._last_seq + 1:
            self._gaps += result.seq - self._last_seq - 1
        self._last_seq = result.seq  # a restarted capture counts from 0 again
        self._results_n += 1
        for consumer in self.consumers:
            region = self._region if getattr(consumer, "needs_frames", False) else None
            consumer.on_result(region, result)
        return 1

    def dispatch_status(self, status: PipelineStatus) -> None:
        """Hand a status to the consumers if it differs from the last one."""
        if status == self._status:
            return
        self._status = status
        for consumer in self.consumers:
            consumer.on_status(status)

    def _poll_status(self) -> None:
        if self._status_sub is None:
            return
        msg = self._status_sub.recv_latest(0)
        if msg is None:
            return
        try:
            status = status_from_message(msg)
        except PivhError:
            self._malformed += 1
            return
        # t_ns differs on every snapshot; compare the content only.
        if self._status is None or _content(status) != _content(self._status):
            self.dispatch_status(status)

    def _poll_frames(self) -> None:
        if self._frames is None:
            return
        msg = self._frames.recv_latest(0)
        if msg is None:
            return
        try:
            self._region = region_from_message(msg)
        except PivhError:
            self._malformed += 1

    @property
    def stats(self) -> HostStats:
        return HostStats(
            results=self._results_n,
            dropped=self._results.counters.dropped,
            gaps=self._gaps,
            frames=self._frames.counters.received if self._frames is not None else 0,
            malformed=self._malformed,
            last_seq=self._last_seq,
        )

    def close(self) -> None:
        for sock in (self._results, self._frames, self._status_sub):
            if sock is not None:
                sock.close()
        errors = []
        for consumer in self.consumers:
            try:
                consumer.close()
            except Exception as exc:  # close the others first
                errors.append(exc)
        if errors:
            raise errors[0]

    def __enter__(self) -> ConsumerHost:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _content(status: PipelineStatus) -> tuple[Any, ...]:
    return (status.source_state, status.source_message, status.stages, status.restarts)
