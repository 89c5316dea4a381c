"""Lesion masks: ``<case_id>.masks.npz`` header reading and shape checks."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from pivh_live.frames import Roi


def _npy_header(path: Path, problems: list[str]) -> tuple[tuple[int, ...], np.dtype] | None:
    """Shape and dtype of ``masks`` in an npz without decompressing the array."""
    try:
        with zipfile.ZipFile(path) as zf:
            if "masks.npy" not in zf.namelist():
                problems.append(f"{path.name} has no array 'masks' (np.savez(path, masks=...))")
                return None
            with zf.open("masks.npy") as fh:
                version = np.lib.format.read_magic(fh)
                read = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                shape, _, dtype = read(fh)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        problems.append(f"cannot read {path.name} ({exc}); rewrite it with np.savez")
        return None
    return shape, dtype


def _mask_problem(
    name: str,
    shape: tuple[int, ...],
    dtype: np.dtype,
    roi: Roi | None,
    n_frames: int | None = None,
    frame_hw: tuple[int, int] | None = None,
) -> str | None:
    if dtype != np.bool_ and dtype.kind not in "iu":
        return f"{name}: masks have dtype {dtype}; use bool"
    if len(shape) != 3:
        return f"{name}: masks have shape {shape}; expected (frames, height, width)"
    hw = (roi.h, roi.w) if roi is not None else frame_hw
    if hw is not None and tuple(shape[1:]) != hw:
        grid = "roi" if roi is not None else "frame"
        return f"{name}: masks are {shape[2]}x{shape[1]} but the {grid} is {hw[1]}x{hw[0]}"
    if n_frames is not None and shape[0] != n_frames:
        return f"{name}: {shape[0]} masks but the clip has {n_frames} frames"
    return None
