"""Write a phantom dataset in the format of docs/dataset.md.

Case i's random stream derives from ``np.random.SeedSequence([seed, i])``, so
the output does not depend on the number of workers or their order: the same
arguments give byte-identical labels, frame labels and masks, and the same
decoded frames.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import multiprocessing as mp
import os
import sys
import zipfile
from pathlib import Path

import numpy as np

from pivh_live.errors import ConfigError
from pivh_live.frames import GRADE_NAMES
from pivh_live.phantom.clip import PREVALENCE, CaseSpec, Clip, render_clip, sample_case

log = logging.getLogger(__name__)

GENERATOR_VERSION = "2.0"
LABEL_HEADER = (
    "case_id", "view", "clip_grade", "side", "grade_left", "grade_right", "roi", "exam_grade",
)  # fmt: skip
FRAME_HEADER = ("frame", "visible_grade", "valid", "grade_left", "grade_right", "view", "angle_deg")
CODECS = {"libx264": ".mp4", "ffv1": ".mkv"}
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def case_spec(
    seed: int, index: int, *, prevalence: str, n_frames: int, fps: float, screen: bool
) -> CaseSpec:
    """The spec of case ``index`` of a dataset with ``seed`` (independent of workers)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
    grade = None
    if prevalence == "balanced":
        # Each block of five cases holds grades 0-IV once, in a seeded order.
        block = np.random.default_rng(np.random.SeedSequence([seed, index // 5, 0xB10C]))
        grade = int(block.permutation(5)[index % 5])
    return sample_case(
        rng, prevalence, case_id=f"ph{index:05d}", n_frames=n_frames, fps=fps, screen=screen,
        grade=grade,
    )  # fmt: skip


def save_masks(path: Path, masks: np.ndarray) -> None:
    """``np.savez_compressed``-compatible file with fixed zip timestamps (reproducible bytes)."""
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(masks.astype(bool)), allow_pickle=False)
    info = zipfile.ZipInfo("masks.npy", date_time=_ZIP_DATE)
    info.compress_type = zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(info, buf.getvalue())


def _frames_csv(clip: Clip) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(FRAME_HEADER)
    for lab in clip.labels:
        w.writerow(
            [lab.frame, lab.visible_grade, int(lab.valid), lab.grade_left, lab.grade_right,
             lab.view if lab.valid else "none", f"{lab.angle_deg:.2f}"]
        )  # fmt: skip
    return out.getvalue()


def _write_case(job: tuple) -> list[str]:
    out, index, seed, prevalence, n_frames, fps, screen, codec = job
    from pivh_live.media import write_video

    spec = case_spec(seed, index, prevalence=prevalence, n_frames=n_frames, fps=fps, screen=screen)
    clip = render_clip(spec)
    out = Path(out)
    write_video(out / f"{spec.case_id}{CODECS[codec]}", clip.frames, fps, codec=codec)
    (out / f"{spec.case_id}.frames.csv").write_text(_frames_csv(clip), encoding="utf-8")
    save_masks(out / f"{spec.case_id}.masks.npz", clip.masks)
    r = clip.roi
    roi = f"{r.x};{r.y};{r.w};{r.h}" if screen else ""
    left, right = clip.sweep_grades
    return [spec.case_id, spec.view, str(clip.clip_grade), clip.side, str(left), str(right), roi,
            str(spec.clip_grade)]  # fmt: skip


def _check_args(
    n_cases: int, seed: int, prevalence: str, seconds: float, fps: float, codec: str
) -> None:
    if n_cases < 1:
        raise ConfigError(f"--cases must be at least 1 (got {n_cases})")
    if seed < 0:
        raise ConfigError(f"--seed must be a non-negative integer (got {seed})")
    if prevalence not in PREVALENCE:
        raise ConfigError(f"unknown prevalence {prevalence!r}; use one of {', '.join(PREVALENCE)}")
    if codec not in CODECS:
        raise ConfigError(f"unknown codec {codec!r}; use one of {', '.join(CODECS)}")
    if not (seconds > 0 and 1.0 <= fps <= 240.0):
        raise ConfigError(f"need seconds > 0 and fps in 1-240 (got {seconds}, {fps})")


def write_dataset(
    out: str | Path,
    *,
    n_cases: int,
    seed: int,
    screen: bool = False,
    prevalence: str = "balanced",
    seconds: float = 5.0,
    fps: float = 25.0,
    codec: str = "libx264",
    workers: int | None = None,
    preview: bool = False,
) -> Path:
    """Render ``n_cases`` clips into ``out`` (created if needed); returns ``out``."""
    from tqdm import tqdm

    _check_args(n_cases, seed, prevalence, seconds, fps, codec)
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create output directory {out}: {exc}") from exc
    n_frames = max(1, round(seconds * fps))
    jobs = [(str(out), i, seed, prevalence, n_frames, fps, screen, codec) for i in range(n_cases)]
    workers = max(1, min(workers or os.cpu_count() or 1, n_cases))
    log.info(
        "phantom: %d cases x %d frames with %d worker(s) -> %s", n_cases, n_frames, workers, out
    )
    bar = tqdm(total=n_cases, unit="clip", disable=not sys.stderr.isatty())
    rows: list[list[str]] = []
    if workers == 1:
        for job in jobs:
            rows.append(_write_case(job))
            bar.update()
    else:
        with mp.get_context("spawn").Pool(workers) as pool:
            for row in pool.imap(_write_case, jobs):
                rows.append(row)
                bar.update()
    bar.close()
    with open(out / "labels.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(LABEL_HEADER)
        w.writerows(rows)
    meta = {
        "generator": "pivh_live.phantom",
        "version": GENERATOR_VERSION,
        "seed": seed,
        "args": {
            "n_cases": n_cases, "screen": screen, "prevalence": prevalence, "seconds": seconds,
            "fps": fps, "codec": codec, "n_frames": n_frames,
        },
        "prevalence_table": dict(zip(GRADE_NAMES, PREVALENCE[prevalence], strict=True)),
        "note": "synthetic phantom; identifiers on screen captures are fake",
    }  # fmt: skip
    (out / "phantom.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    if preview:
        from pivh_live.phantom.preview import write_preview

        write_preview(out, out / "preview.png")
    return out


__all__ = ["GENERATOR_VERSION", "case_spec", "save_masks", "write_dataset"]
