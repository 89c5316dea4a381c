"""Training data in memory: decoded once, subsampled, letterboxed, with per-frame targets.

Each case is decoded once; every ``stride``-th frame is letterboxed to the
model's input size (``pivh_live.preprocess.letterbox``, the same geometry as
inference) and kept as uint8, so an epoch costs only augmentation and the
network. Targets per kept frame:

- ``grade``: the frame's visible Papile grade 0-4 from frames.csv; -1 (ignored
  by the grade loss) where no brain is shown (visible_grade -1 or valid 0).
  A case without frames.csv gets its clip grade on every frame and valid 1:
  a weak label, since a sweep does not show the lesion in every frame.
- ``valid``: 1 brain shown, 0 blank / off-head.
- heatmap: the lesion mask letterboxed (coverage 0-255, kept only where
  non-empty), area-downsampled to the heatmap grid after augmentation. Cases
  without masks contribute no heatmap loss.

Splits are by case, never by frame (see ``split_cases``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from pivh_live.errors import DatasetError
from pivh_live.preprocess import normalize
from pivh_live.training.augment import Augmenter, Box

log = logging.getLogger(__name__)

VAL_SPLITS = ("val", "valid", "validation")


@dataclass(frozen=True)
class CaseInfo:
    """What training needs to remember about one case."""

    case_id: str
    clip_grade: int
    box: Box  # letterbox content box (top, left, h, w)
    fps: float
    n_frames: int
    has_frame_labels: bool
    has_masks: bool
    stretch: float = 1.0  # rows per column of the fitted image over the region's (1: letterbox)


@dataclass(frozen=True)
class FrameSet:
    """Kept frames of several cases, concatenated in case order then frame order."""

    images: np.ndarray  # (N, S, S) uint8 letterboxed
    grade: np.ndarray  # (N,) int8, -1 = no grade target
    valid: np.ndarray  # (N,) int8, 1 brain shown / 0 not
    case_index: np.ndarray  # (N,) int32 into ``cases``
    frame_index: np.ndarray  # (N,) int32 frame number in the clip
    t_s: np.ndarray  # (N,) float64 media time
    cases: tuple[CaseInfo, ...]
    masks: dict[int, np.ndarray] = field(default_factory=dict)  # row -> (S, S) uint8

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def case_rows(self, case: int) -> np.ndarray:
        return np.flatnonzero(self.case_index == case)


def case_split(case: Any) -> str:
    """The case's ``split`` column, stripped and lower-case ("" when absent)."""
    return str(getattr(case, "split", "") or "").strip().lower()


def split_cases(
    cases: Sequence[Any], val_fraction: float, seed: int
) -> tuple[list[Any], list[Any]]:
    """Case-level train/val split.

    Cases whose ``split`` says train/val are used as labelled (``test`` cases
    are left out). Without any val-labelled case, the train cases are split
    stratified by clip grade with ``np.random.default_rng(seed)``, at least one
    val case per grade that has two or more cases.
    """
    splits = [case_split(c) for c in cases]
    pool = [c for c, s in zip(cases, splits, strict=True) if s != "test"]
    val = [c for c, s in zip(cases, splits, strict=True) if s in VAL_SPLITS]
    if val:
        train = [c for c, s in zip(cases, splits, strict=True) if s not in (*VAL_SPLITS, "test")]
        return train, val
    rng = np.random.default_rng(seed)
    train, val = [], []
    for grade in sorted({int(c.clip_grade) for c in pool}):
        group = [c for c in pool if int(c.clip_grade) == grade]
        order = rng.permutation(len(group))
        n_val = round(len(group) * val_fraction)
        n_val = max(n_val, 1) if len(group) >= 2 else 0
        val += [group[i] for i in order[:n_val]]
        train += [group[i] for i in order[n_val:]]
    if not val or not train:
        raise DatasetError(
            f"cannot split {len(pool)} case(s) into train and validation; "
            "add cases or pass --val-data"
        )
    key = {id(c): i for i, c in enumerate(cases)}
    return sorted(train, key=lambda c: key[id(c)]), sorted(val, key=lambda c: key[id(c)])


def frame_targets(case: Any, n_frames: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """(grade, valid, has_frame_labels) per frame; weak clip-grade labels without frames.csv."""
    from pivh_live.dataset import load_frame_labels

    labels = load_frame_labels(case)
    if labels is None:
        grade = np.full(n_frames, int(case.clip_grade), dtype=np.int8)
        return grade, np.ones(n_frames, dtype=np.int8), False
    index = np.asarray(labels.frame, dtype=np.int64)
    visible = np.asarray(labels.visible_grade, dtype=np.int64)
    valid_in = np.asarray(labels.valid, dtype=bool)
    ok = (index >= 0) & (index < n_frames)
    grade = np.full(n_frames, -1, dtype=np.int8)
    valid = np.full(n_frames, -1, dtype=np.int8)  # frames missing from frames.csv: no target
    valid[index[ok]] = valid_in[ok].astype(np.int8)
    grade[index[ok]] = np.where(valid_in[ok] & (visible[ok] >= 0), visible[ok], -1).astype(np.int8)
    return grade, valid, True


@dataclass(frozen=True)
class _DecodedCase:
    images: np.ndarray  # (n, S, S) uint8: one block per case, not n small arrays
    masks: dict[int, np.ndarray]  # position in ``images`` -> letterboxed mask coverage
    grade: np.ndarray
    valid: np.ndarray
    keep: np.ndarray
    info: CaseInfo


def _decode_case(case: Any, size: int, stride: int, fit: str = "letterbox") -> _DecodedCase:
    from pivh_live.dataset import load_frames, load_masks
    from pivh_live.preprocess import letterbox, letterbox_geometry

    frames, fps = load_frames(case)
    n = int(frames.shape[0])
    grade, valid, has_labels = frame_targets(case, n)
    case_masks = load_masks(case)
    keep = np.arange(0, n, stride)
    keep = keep[valid[keep] >= 0]  # frames with no label at all teach nothing
    geo = letterbox_geometry(frames.shape[1], frames.shape[2], size, fit)
    images = np.empty((keep.size, size, size), dtype=np.uint8)
    lesion = [
        pos
        for pos, j in enumerate(keep.tolist())
        if case_masks is not None and j < case_masks.shape[0] and case_masks[j].any()
    ]
    cover = np.empty((len(lesion), size, size), dtype=np.uint8)
    for pos, j in enumerate(keep.tolist()):
        images[pos] = letterbox(frames[j], size, cv2.INTER_AREA, fit)
    for k, pos in enumerate(lesion):
        area = letterbox(case_masks[keep[pos]], size, cv2.INTER_AREA, fit)
        cover[k] = np.clip(np.rint(area * 255.0), 0, 255)
    masks = {pos: cover[k] for k, pos in enumerate(lesion)}
    info = CaseInfo(
        case_id=str(case.case_id),
        clip_grade=int(case.clip_grade),
        box=(geo.top, geo.left, geo.content_h, geo.content_w),
        fps=float(fps),
        n_frames=n,
        has_frame_labels=has_labels,
        has_masks=case_masks is not None,
        # Exactly 1 for a letterbox (its scales differ only by rounding).
        stretch=1.0 if fit == "letterbox" else geo.scale_y / geo.scale_x,
    )
    return _DecodedCase(images, masks, grade[keep], valid[keep], keep, info)


RELEASE_EVERY = 256 << 20  # bytes copied between heap trims while stacking the frames


def _concatenate_freeing(blocks: list[np.ndarray]) -> np.ndarray:
    """The blocks stacked along axis 0, emptying ``blocks`` as it goes.

    The result's pages are only committed as they are written while each block
    is released after its copy (and the freed heap handed back every
    ``RELEASE_EVERY`` bytes), so the peak is about one copy of the data, not two
    as with np.concatenate.
    """
    n = sum(len(b) for b in blocks)
    out = np.empty((n, *blocks[0].shape[1:]), dtype=blocks[0].dtype)
    row = freed = 0
    blocks.reverse()
    while blocks:
        block = blocks.pop()
        out[row : row + len(block)] = block
        row += len(block)
        freed += block.nbytes
        del block
        if freed >= RELEASE_EVERY:
            release_free_memory()
            freed = 0
    return out


def load_frameset(
    cases: Sequence[Any],
    size: int,
    stride: int,
    *,
    progress: bool = True,
    workers: int = 1,
    fit: str = "letterbox",
) -> FrameSet:
    """Decode ``cases`` and keep every ``stride``-th frame fitted (``fit``) to ``size``.

    ``workers`` > 1 decodes that many cases at once in threads (PyAV and OpenCV
    release the GIL); the result is the same, in case order, whatever the count.
    A case that fails to load stops the others at once (no waiting for the rest).
    """
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    blocks: list[np.ndarray] = []
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("grade", "valid", "case", "frame", "t")}
    masks: dict[int, np.ndarray] = {}
    infos: list[CaseInfo] = []
    # Executor.map cancels the cases not yet started when one raises.
    with ThreadPoolExecutor(max(1, workers)) as pool:
        decoded = pool.map(lambda case: _decode_case(case, size, stride, fit), cases)
        bar = tqdm(decoded, total=len(cases), desc="decode", unit="case", disable=not progress)
        row = 0
        for ci, dc in enumerate(bar):
            blocks.append(dc.images)
            masks.update({row + pos: m for pos, m in dc.masks.items()})
            cols["grade"].append(dc.grade)
            cols["valid"].append(dc.valid)
            cols["case"].append(np.full(dc.keep.size, ci, dtype=np.int32))
            cols["frame"].append(dc.keep.astype(np.int32))
            cols["t"].append(dc.keep / dc.info.fps)
            infos.append(dc.info)
            row += len(dc.images)
    if not row:
        raise DatasetError("no labelled frames to train on; check frames.csv and the media files")
    frameset = FrameSet(
        images=_concatenate_freeing(blocks),
        grade=np.concatenate(cols["grade"]).astype(np.int8),
        valid=np.concatenate(cols["valid"]).astype(np.int8),
        case_index=np.concatenate(cols["case"]),
        frame_index=np.concatenate(cols["frame"]),
        t_s=np.concatenate(cols["t"]).astype(np.float64),
        cases=tuple(infos),
        masks=masks,
    )
    release_free_memory()
    return frameset


def release_free_memory() -> bool:
    """Hand the C heap's free pages back to the system (glibc ``malloc_trim``).

    Decoding frees thousands of clip-sized arrays; glibc keeps most of them in
    its heaps (its mmap threshold grows to the largest block freed), so the
    training process held the data nearly twice over (3.86 GB resident for
    2.09 GB of frames and masks, docs/training.md). False where there is no glibc.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        trim = None
    if trim is None:
        return False
    trim(0)
    return True


def class_weights(grade: np.ndarray, n_classes: int = 5, power: float = 0.5) -> np.ndarray:
    """Inverse-frequency weights ``(N / (K * n_k)) ** power`` over graded frames.

    ``power`` 1 is full inverse frequency, 0 no weighting; absent classes get 1.
    Normalised so that the frequency-weighted mean is 1 (loss scale unchanged).
    """
    g = grade[grade >= 0].astype(np.int64)
    counts = np.bincount(g, minlength=n_classes).astype(np.float64)
    if counts.sum() == 0:
        return np.ones(n_classes, dtype=np.float32)
    w = np.ones(n_classes)
    present = counts > 0
    w[present] = (counts.sum() / (n_classes * counts[present])) ** power
    w /= (w * counts).sum() / counts.sum()
    return w.astype(np.float32)


def small_lesion_weights(frames: FrameSet, factor: float, quantile: float) -> np.ndarray | None:
    """Per-row sampling weights that draw each grade's smallest lesions ``factor`` x as often.

    Within each grade I-IV, the frames with a mask whose lesion area (pixels of the
    stored frame) lies below that grade's ``quantile`` of areas get ``factor``; the
    weights are then scaled so that every grade, and grade 0 and ungraded frames,
    keep the share of the epoch they have with uniform sampling: only which
    lesions of a grade are seen changes, not the class balance. None when
    ``factor`` is 1 or no frame qualifies (uniform sampling).
    """
    if factor == 1.0 or not frames.masks:
        return None
    w = np.ones(len(frames), dtype=np.float64)
    area = np.zeros(len(frames), dtype=np.float64)
    for row, mask in frames.masks.items():
        area[row] = float(mask.sum(dtype=np.float64)) / 255.0
    boosted = 0
    for g in range(1, 5):
        rows = np.flatnonzero((frames.grade == g) & (area > 0))
        if rows.size < 2:
            continue
        cut = np.quantile(area[rows], quantile)
        small = rows[area[rows] < cut]
        if small.size == 0:
            continue
        w[small] = factor
        w[rows] *= rows.size / w[rows].sum()  # the grade keeps its share of draws
        boosted += small.size
    return w / w.sum() if boosted else None


def epoch_indices(
    n: int, samples: int, seed: int, epoch: int, weights: np.ndarray | None = None
) -> np.ndarray:
    """The rows one epoch visits: a seeded permutation, cut or repeated to ``samples``.

    With ``weights`` (probabilities over the rows, ``small_lesion_weights``), the
    rows are drawn with replacement in those proportions instead.
    """
    rng = np.random.default_rng([seed, epoch, 0x5EED])
    if weights is not None:
        if weights.shape != (n,):
            raise ValueError(f"weights must have shape ({n},), got {weights.shape}")
        return rng.choice(n, size=samples if samples > 0 else n, replace=True, p=weights)
    if samples <= 0 or samples == n:
        return rng.permutation(n)
    reps = -(-samples // n)
    return np.concatenate([rng.permutation(n) for _ in range(reps)])[:samples]


class FrameDataset:
    """torch-style dataset over a FrameSet: item -> dict of tensors.

    Augmentation is seeded per (seed, epoch, row), so a run (and a resumed
    run) sees the same images whatever the worker count. Call ``set_epoch``
    before each epoch's loader is created.
    """

    def __init__(
        self,
        frames: FrameSet,
        augmenter: Augmenter | None,
        seed: int,
        heatmap_size: int,
        norm: str = "none",
    ) -> None:
        self.frames = frames
        self.norm = norm
        self.augmenter = augmenter
        self.seed = seed
        self.heatmap_size = heatmap_size
        self.epoch = 0
        self.size: int | None = None

    def set_epoch(self, epoch: int, size: int | None = None) -> None:
        """Seed the next epoch's augmentation; ``size`` resizes each frame before it.

        With ``size`` (the low-res epochs' side, see ``low_res_resize_first``) items
        come out at ``size`` x ``size`` with a ``size // 8`` heatmap; None keeps the
        stored size.
        """
        self.epoch = epoch
        self.size = size

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, row: int) -> dict[str, Any]:
        import torch

        fs = self.frames
        image = fs.images[row]
        mask = fs.masks.get(row)
        case = fs.cases[int(fs.case_index[row])]
        box, s = case.box, self.heatmap_size
        if self.size is not None and self.size != image.shape[0]:
            image, mask, box = downsize(image, mask, box, self.size)
            s = self.size // 8
        if self.augmenter is not None:
            rng = np.random.default_rng([self.seed, self.epoch, int(row)])
            # The zoom keeps every masked pixel in view; a graded lesion without a mask
            # could leave it, so such frames are not zoomed.
            may_zoom = int(fs.grade[row]) <= 0 or (mask is not None and bool(mask.any()))
            image, mask = self.augmenter(image, mask, box, rng, case.stretch, may_zoom)
        if mask is None:
            heat = np.zeros((s, s), dtype=np.float32)
        else:
            heat = cv2.resize(mask.astype(np.float32) / 255.0, (s, s), interpolation=cv2.INTER_AREA)
        # numpy, not torch, for the per-item conversion: torch's thread pool costs more
        # than the arithmetic on one 256x256 image. After the augmentation, as an engine
        # normalizes what the scanner sent.
        x = normalize(image, self.norm)
        return {
            "image": torch.from_numpy(x[None]),
            "grade": torch.tensor(int(fs.grade[row]), dtype=torch.long),
            "valid": torch.tensor(float(max(int(fs.valid[row]), 0)), dtype=torch.float32),
            "heatmap": torch.from_numpy(heat).unsqueeze(0),
            "has_heatmap": torch.tensor(float(case.has_masks), dtype=torch.float32),
        }


def downsize(
    image: np.ndarray, mask: np.ndarray | None, box: Box, size: int
) -> tuple[np.ndarray, np.ndarray | None, Box]:
    """A stored square frame, its mask and content box resized to ``size`` (area resize)."""
    f = size / image.shape[0]
    small = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    if mask is not None:
        mask = cv2.resize(mask, (size, size), interpolation=cv2.INTER_AREA)
    top, left, h, w = box
    scaled = (round(top * f), round(left * f), max(1, round(h * f)), max(1, round(w * f)))
    return small, mask, scaled
