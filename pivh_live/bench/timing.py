"""Per-frame stage stamps -> per-stage and end-to-end latency statistics.

A run produces one record per result: ``(seq, stamps)`` where ``stamps``
maps stage names to ``time.monotonic_ns()`` values, all on one machine and
one clock (the pipeline's own stamps plus the benchmark's ``overlay``,
``display`` and ``record``). Frames are kept in the order the consumer saw
them; the first and last ``trim`` are left out before any statistic.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pivh_live.bench.stats import latency_stats

Record = tuple[int, Mapping[str, int]]

# The order stamps are taken in along one frame's path; a run has a subset.
STAGE_ORDER: tuple[str, ...] = (
    "capture",
    "crop",
    "capture.send",
    "infer.recv",
    "preprocess",
    "infer",
    "smooth",
    "result.send",
    "host.recv",
    "overlay",
)
# What the time up to each stamp (from the stamp before it) is spent on.
STAGE_MEANING: dict[str, str] = {
    "capture": "the frame is captured (source; the due time for the benchmark clip)",
    "crop": "wait to be read, find the image region (auto or fixed ROI), copy the crop",
    "capture.send": "encode the region frame and publish it (multi-process only)",
    "infer.recv": "transport to the inference process, including waiting there",
    "preprocess": "gray conversion and letterbox to the model input",
    "infer": "engine call and logits -> probabilities",
    "smooth": "motion and the temporal smoother",
    "result.send": "encode and publish the result (multi-process only)",
    "host.recv": "transport to the consumer host (multi-process only)",
    "overlay": "overlay render on the region (OverlayStage): ready to show",
}
# Consumer hand-offs measured from capture, beside the main path.
BRANCH_MEANING: dict[str, str] = {
    "display.handoff": "capture -> LiveDisplay.on_result returned (the display hub holds it)",
    "display": "capture -> the web display's JPEG (overlay + encode) is ready for a browser",
    "record": "capture -> the recorder consumer returned from on_result",
}
END_STAGE = "overlay"


def present_stages(records: Sequence[Record]) -> list[str]:
    """The stamps of `STAGE_ORDER` that every record has, in path order."""
    if not records:
        return []
    return [s for s in STAGE_ORDER if all(s in stamps for _, stamps in records)]


def trimmed(records: Sequence[Record], trim: int) -> list[Record]:
    """``records`` without the first and last ``trim`` (warm-up and shutdown)."""
    if trim < 0:
        raise ValueError(f"trim must be >= 0, got {trim}")
    if len(records) <= 2 * trim:
        raise ValueError(f"need more than {2 * trim} frames to trim {trim} from each end, "
                         f"got {len(records)}")  # fmt: skip
    return list(records[trim : len(records) - trim])


def stamp_ms(records: Sequence[Record], name: str, since: str = "capture") -> np.ndarray:
    """``stamps[name] - stamps[since]`` in ms per record (NaN where either is missing)."""
    out = np.full(len(records), np.nan)
    for i, (_, s) in enumerate(records):
        if name in s and since in s:
            out[i] = (s[name] - s[since]) / 1e6
    return out


def analyze_records(
    records: Sequence[Record], trim: int = 10, end: str = END_STAGE
) -> dict[str, Any]:
    """Latency statistics (ms) of a run's records after trimming.

    ``end_to_end_ms``: capture -> ``end``; ``stages_ms``: each present stage
    from the stamp before it; ``cumulative_ms``: each stage from capture;
    ``branches_ms``: display/record from capture over the frames that have
    them (``frames`` says how many).
    """
    kept = trimmed(records, trim)
    stages = present_stages(kept)
    if "capture" not in stages or end not in stages:
        raise ValueError(f"every frame needs a capture and an {end!r} stamp; have {stages}")
    out: dict[str, Any] = {
        "frames": len(records),
        "kept": len(kept),
        "trim": trim,
        "stamp_order": stages,
        "end_to_end_ms": latency_stats(stamp_ms(kept, end), trim=0),
        "stages_ms": {},
        "cumulative_ms": {},
        "branches_ms": {},
    }
    for prev, name in itertools.pairwise(stages):
        out["stages_ms"][name] = latency_stats(stamp_ms(kept, name, prev), trim=0)
        out["cumulative_ms"][name] = latency_stats(stamp_ms(kept, name), trim=0)
    for name in BRANCH_MEANING:
        values = stamp_ms(kept, name)
        values = values[np.isfinite(values)]
        if values.size:
            out["branches_ms"][name] = {**latency_stats(values, trim=0), "frames": int(values.size)}
    return out


def seq_gaps(seqs: Sequence[int]) -> int:
    """Frame numbers between the first and last result that never produced one."""
    if len(seqs) < 2:
        return 0
    s = np.asarray(seqs, dtype=np.int64)
    return int(max(0, (s.max() - s.min() + 1) - np.unique(s).size))


def source_drop_estimate(records: Sequence[Record], fps: float) -> int | None:
    """Frames a paced source should have delivered between the first and last result but did
    not (its ``seq`` counts only delivered frames); None when not paced (fps 0)."""
    if fps <= 0 or len(records) < 2:
        return None
    seqs = [seq for seq, _ in records]
    caps = [s["capture"] for _, s in records]
    expected = round((max(caps) - min(caps)) * fps / 1e9) + 1
    delivered = max(seqs) - min(seqs) + 1
    return int(max(0, expected - delivered))


def throughput(records: Sequence[Record], end: str = END_STAGE) -> dict[str, float | None]:
    """Results per second (by ``end`` stamps) and captured frames per second (by capture)."""
    if len(records) < 2:
        return {"results_per_s": None, "capture_fps": None}
    ends = np.array([s[end] for _, s in records], dtype=np.float64)
    caps = np.array([s["capture"] for _, s in records], dtype=np.float64)
    seqs = np.array([seq for seq, _ in records], dtype=np.float64)

    def rate(n: float, span_ns: float) -> float | None:
        return round(n / (span_ns / 1e9), 2) if span_ns > 0 else None

    return {
        "results_per_s": rate(len(records) - 1, ends.max() - ends.min()),
        "capture_fps": rate(seqs.max() - seqs.min(), caps.max() - caps.min()),
    }


def per_window(
    records: Sequence[Record], window_s: float = 60.0, end: str = END_STAGE
) -> list[dict[str, float]]:
    """End-to-end median and p99 per ``window_s`` of capture time (soak stability)."""
    if not records:
        return []
    caps = np.array([s["capture"] for _, s in records], dtype=np.float64)
    lat = stamp_ms(records, end)
    index = ((caps - caps.min()) // (window_s * 1e9)).astype(np.int64)
    out = []
    for w in range(int(index.max()) + 1):
        values = lat[(index == w) & np.isfinite(lat)]
        if values.size:
            out.append({
                "window": w,
                "start_s": w * window_s,
                "frames": int(values.size),
                "median": float(np.median(values)),
                "p99": float(np.percentile(values, 99)),
                "max": float(values.max()),
            })  # fmt: skip
    return out


class StampTable:
    """Per-frame stamps in preallocated int64 columns.

    A soak run keeps ~100 k frames; as Python dicts they would grow the
    measured process by tens of MB and show up as a "leak". The table
    touches all its memory up front (``capacity`` rows) and only doubles if
    a run outlasts it. Stamps not in ``names`` are kept aside in a dict.
    """

    MISSING = np.iinfo(np.int64).min

    def __init__(self, capacity: int = 4096, names: Sequence[str] | None = None) -> None:
        self.names = tuple(names or (*STAGE_ORDER, *BRANCH_MEANING))
        self._col = {n: i for i, n in enumerate(self.names)}
        self._data = np.full((max(1, capacity), len(self.names)), self.MISSING, dtype=np.int64)
        self._seq = np.zeros(max(1, capacity), dtype=np.int64)
        self._extra: dict[int, dict[str, int]] = {}
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def add(self, seq: int, stamps: Mapping[str, int]) -> None:
        if self._n == len(self._seq):
            self._data = np.concatenate([self._data, np.full_like(self._data, self.MISSING)])
            self._seq = np.concatenate([self._seq, np.zeros_like(self._seq)])
        row = self._data[self._n]
        for name, value in stamps.items():
            col = self._col.get(name)
            if col is None:
                self._extra.setdefault(self._n, {})[name] = int(value)
            else:
                row[col] = value
        self._seq[self._n] = seq
        self._n += 1

    def records(self) -> list[Record]:
        out: list[Record] = []
        for i in range(self._n):
            row = self._data[i]
            stamps = {n: int(row[c]) for n, c in self._col.items() if row[c] != self.MISSING}
            stamps.update(self._extra.get(i, {}))
            out.append((int(self._seq[i]), stamps))
        return out


class SeqTimes:
    """``seq -> ns`` in a preallocated int64 array, for per-frame times kept over a long run.

    A dict of Python ints grows the measured process by ~100 bytes a frame
    (10 MB in a 30-minute soak at 60 fps) and would read as a leak.
    """

    MISSING = np.iinfo(np.int64).min

    def __init__(self, capacity: int = 4096) -> None:
        self._t = np.full(max(1, capacity), self.MISSING, dtype=np.int64)
        self._n = 0

    def add(self, seq: int, t_ns: int) -> None:
        """Keep the first time seen for ``seq`` (negative seqs are ignored)."""
        if seq < 0:
            return
        if seq >= self._t.size:
            grown = np.full(max(2 * self._t.size, seq + 1), self.MISSING, dtype=np.int64)
            grown[: self._t.size] = self._t
            self._t = grown
        if self._t[seq] == self.MISSING:
            self._t[seq] = t_ns
            self._n += 1

    def __contains__(self, seq: object) -> bool:
        return isinstance(seq, int) and 0 <= seq < self._t.size and self._t[seq] != self.MISSING

    def __getitem__(self, seq: int) -> int:
        if seq not in self:
            raise KeyError(seq)
        return int(self._t[seq])

    def __len__(self) -> int:
        return self._n
