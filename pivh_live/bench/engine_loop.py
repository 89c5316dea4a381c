"""The bare engine loop: ``Engine.score_preprocessed`` timed call by call, preprocessing excluded.

Frames are preprocessed once, up front, into the batches the loop cycles
through, so the numbers are the engine's alone (the full-pipeline bench adds
capture, preprocess and smoothing on top of this). Each call is what the live
pipeline asks of the engine: the network on the batch (and on its mirror
where the bundle declares test-time augmentation "hflip") plus the
softmax/sigmoid, a few microseconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from pivh_live.bench.stats import latency_stats
from pivh_live.engines.base import Engine
from pivh_live.preprocess import preprocess_batch

log = logging.getLogger(__name__)


def bench_engine_loop(
    engine: Engine,
    frames: Sequence[np.ndarray],
    n: int = 200,
    warmup: int = 20,
    batch: int = 1,
) -> dict[str, Any]:
    """Time ``n`` scoring calls of ``batch`` frames each after ``warmup`` untimed calls.

    ``frames`` are gray uint8 regions, reused in turn. Returns the engine
    name, batch, counts, ``latency_ms`` (latency_stats of the n calls, none
    trimmed: the warm-up calls are the trim) and ``per_frame_ms_median`` and
    ``fps`` derived from the median call.
    """
    if n < 1 or warmup < 0 or batch < 1:
        raise ValueError(f"need n >= 1, warmup >= 0, batch >= 1; got {n}, {warmup}, {batch}")
    if len(frames) == 0:
        raise ValueError("bench_engine_loop needs at least one frame")
    size = engine.bundle.input_size
    n_batches = max(1, min(8, len(frames) // batch))
    batches = [
        preprocess_batch(
            [frames[(i * batch + j) % len(frames)] for j in range(batch)],
            size,
            engine.bundle.fit,
            engine.bundle.norm,
        )
        for i in range(n_batches)
    ]
    for i in range(warmup):
        engine.score_preprocessed(batches[i % n_batches])
    samples_ns = np.empty(n, dtype=np.int64)
    for i in range(n):
        x = batches[i % n_batches]
        t0 = time.perf_counter_ns()
        engine.score_preprocessed(x)
        samples_ns[i] = time.perf_counter_ns() - t0
    stats = latency_stats(samples_ns / 1e6, trim=0)
    log.info(
        "%s batch %d: median %.3f ms/call over %d calls", engine.name, batch, stats["median"], n
    )
    return {
        "engine": engine.name,
        "batch": batch,
        "tta": engine.bundle.tta,
        "norm": engine.bundle.norm,
        "n": n,
        "warmup": warmup,
        "latency_ms": stats,
        "per_frame_ms_median": stats["median"] / batch,
        "fps": 1000.0 * batch / stats["median"],
    }


def phantom_regions(seed: int, n: int = 16) -> list[np.ndarray]:
    """``n`` seeded phantom image regions (one short clip) to feed timing loops."""
    from pivh_live.phantom import render_clip, sample_case

    spec = sample_case(np.random.default_rng(seed), "balanced", n_frames=n, grade=3)
    return list(render_clip(spec).frames)
