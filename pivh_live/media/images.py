"""Image folders (one image per frame, natural sort order) to gray frames."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pivh_live.errors import MediaError
from pivh_live.media.common import (
    DEFAULT_FPS,
    FPS_FILE,
    IMAGE_EXTENSIONS,
    MediaFrame,
    MediaInfo,
    rgb_to_gray,
)

log = logging.getLogger(__name__)


def _probe_images(folder: Path) -> MediaInfo:
    files = _list_images(folder)
    first = _read_image(files[0])
    return MediaInfo("images", len(files), _folder_fps(folder), first.shape[1], first.shape[0])


def _natural_key(name: str) -> tuple[tuple[int | str, ...], str]:
    parts = re.split(r"(\d+)", name.lower())
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts)), name


def _list_images(folder: Path) -> list[Path]:
    images: list[Path] = []
    for entry in sorted(folder.iterdir(), key=lambda p: _natural_key(p.name)):
        if entry.name.startswith(".") or entry.name == FPS_FILE:
            continue
        if entry.is_file() and entry.suffix.lower() in IMAGE_EXTENSIONS:
            images.append(entry)
        else:
            log.warning("%s: skipping %s, not a png/jpg/bmp/tif image", folder, entry.name)
    if not images:
        raise MediaError(f"image folder {folder} holds no png/jpg/jpeg/bmp/tif/tiff images")
    return images


def _folder_fps(folder: Path) -> float:
    fps_file = folder / FPS_FILE
    if not fps_file.is_file():
        return DEFAULT_FPS
    text = fps_file.read_text(encoding="utf-8", errors="replace").strip()
    try:
        fps = float(text)
    except ValueError:
        fps = 0.0
    if not 0 < fps < 10_000:
        raise MediaError(f"{fps_file} must hold one positive number (frames per second)")
    return fps


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            if getattr(im, "n_frames", 1) > 1:
                log.warning("%s has %d pages; using the first", path, im.n_frames)
            return _pil_to_gray(im)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise MediaError(f"cannot read image {path} ({exc}); replace or remove it") from exc


def _pil_to_gray(im: Any) -> np.ndarray:
    if im.mode == "L":
        return np.array(im, dtype=np.uint8)
    if im.mode == "LA":
        return np.array(im.getchannel("L"), dtype=np.uint8)
    if im.mode == "1":
        return np.array(im.convert("L"), dtype=np.uint8)
    if im.mode.startswith("I"):  # 16-bit gray (I;16*, or I as Pillow opens 16-bit PNG)
        arr = np.asarray(im).astype(np.float64)
        return np.clip(np.rint(arr / 257.0), 0, 255).astype(np.uint8)
    if im.mode == "F":
        return np.clip(np.rint(np.asarray(im)), 0, 255).astype(np.uint8)
    return rgb_to_gray(np.asarray(im.convert("RGB")))


def _iter_images(folder: Path, max_frames: int | None) -> Iterator[MediaFrame]:
    files = _list_images(folder)
    fps = _folder_fps(folder)
    shape: tuple[int, ...] | None = None
    for index, path in enumerate(files[:max_frames]):
        image = _read_image(path)
        if shape is not None and image.shape != shape:
            raise MediaError(
                f"{path} is {image.shape[1]}x{image.shape[0]} but the folder's first image is "
                f"{shape[1]}x{shape[0]}; all images of a clip must have one size"
            )
        shape = image.shape
        yield MediaFrame(index, index / fps, image)
