"""Single-process mode: source -> region -> inference -> consumers in one loop.

For debugging, as the benchmark baseline, and (with pacing off and media
time) for offline `analyze`. No sockets: the stages are called directly, so
every frame the source delivers is scored, in order.

    pipeline = SinglePipeline(RegionStage(roi=roi), InferenceStage(engine), [writer])
    stats = pipeline.run(source)  # a Source or ResilientSource
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pivh_live.frames import Frame
from pivh_live.pipeline.results import FrameResult, PipelineStatus, RegionFrame, ResultConsumer
from pivh_live.pipeline.stages import InferenceStage, RegionStage

log = logging.getLogger(__name__)

_END = object()


@dataclass
class RunStats:
    """Counters of one run (mutable while it runs)."""

    frames: int = 0  # frames the source delivered
    regions: int = 0  # frames with a known ROI, passed on
    results: int = 0
    statuses: int = 0
    seconds: float = 0.0

    @property
    def fps(self) -> float:
        return self.results / self.seconds if self.seconds > 0 else 0.0


class SinglePipeline:
    """Runs the stages in the calling thread; ``batch`` > 1 scores several frames per engine call.

    Results are identical for any ``batch``: the engine is stateless and the
    smoother still sees every frame in order.
    """

    def __init__(
        self,
        region: RegionStage,
        inference: InferenceStage,
        consumers: Sequence[ResultConsumer] = (),
        *,
        batch: int = 1,
    ) -> None:
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        self.region = region
        self.inference = inference
        self.consumers = list(consumers)
        self.batch = batch
        self.stats = RunStats()
        self._pending: list[RegionFrame] = []

    def process(self, frame: Frame) -> list[FrameResult]:
        """Feed one frame; returns the results completed by it (empty while batching)."""
        self.stats.frames += 1
        region = self.region.process(frame)
        if region is None:
            return []
        self.stats.regions += 1
        self._pending.append(region)
        if len(self._pending) < self.batch:
            return []
        return self.flush()

    def flush(self) -> list[FrameResult]:
        """Score and hand on whatever is still batched."""
        pending, self._pending = self._pending, []
        results = self.inference.process_batch(pending)
        for region, result in zip(pending, results, strict=True):
            self.stats.results += 1
            for consumer in self.consumers:
                # As in the multi-process host: pixels only for consumers that ask for them.
                consumer.on_result(region if consumer.needs_frames else None, result)
        return results

    def on_status(self, status: PipelineStatus) -> None:
        self.stats.statuses += 1
        for consumer in self.consumers:
            consumer.on_status(status)

    def run(
        self,
        source: Any,
        *,
        max_frames: int | None = None,
        duration_s: float | None = None,
        stop: Callable[[], bool] | None = None,
        prefetch: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> RunStats:
        """Read ``source`` until it ends, ``max_frames``, ``duration_s`` or ``stop()``.

        ``source.read()`` returns a `Frame`, a `SourceStatus` (from a
        `ResilientSource`; passed to the consumers as a `PipelineStatus`) or
        None at the end. ``prefetch`` > 0 decodes in a reader thread with a
        queue of that many frames (offline analysis: decoding overlaps
        inference).
        """
        from pivh_live.sources import SourceStatus

        start = clock()
        items = _prefetched(source.read, prefetch) if prefetch > 0 else _direct(source.read)
        try:
            for item in items:
                if isinstance(item, SourceStatus):
                    self.on_status(
                        PipelineStatus(
                            item.t_ns, item.state, item.message, (("capture", "running"),)
                        )
                    )
                else:
                    self.process(item)
                if max_frames is not None and self.stats.frames >= max_frames:
                    break
                if duration_s is not None and clock() - start >= duration_s:
                    break
                if stop is not None and stop():
                    break
            self.flush()
        finally:
            items.close()
            self.stats.seconds = clock() - start
        return self.stats

    def close(self) -> None:
        """Close every consumer (each once, even if one fails)."""
        errors = []
        for consumer in self.consumers:
            try:
                consumer.close()
            except Exception as exc:  # report after closing the others
                errors.append(exc)
        if errors:
            raise errors[0]


def _direct(read: Callable[[], Any]) -> Iterator[Any]:
    while (item := read()) is not None:
        yield item


def _prefetched(read: Callable[[], Any], depth: int) -> Iterator[Any]:
    """``read()`` in a thread feeding a bounded queue; errors re-raised here, in order."""
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    done = threading.Event()

    def put(item: Any) -> bool:
        while not done.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def reader() -> None:
        try:
            while (item := read()) is not None:
                if not put(item):
                    return
            put(_END)
        except BaseException as exc:  # handed to the consumer thread
            put(exc)

    thread = threading.Thread(target=reader, name="pipeline-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        done.set()
        thread.join(timeout=5.0)
