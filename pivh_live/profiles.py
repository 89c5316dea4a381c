"""Saved per-scanner image regions: one JSON file per scanner.

``$XDG_CONFIG_HOME/pivh-live/profiles/<name>.json`` (``~/.config`` when
XDG_CONFIG_HOME is unset) maps a screen resolution to the ROI of the
ultrasound image at that resolution::

    {"version": 1, "rois": {"1920x1080": {"x": 420, "y": 130, "w": 1080, "h": 860}}}

A scanner lays its screen out the same way every time, so a saved ROI skips
auto-detection. Files are written 0600 in a 0700 directory: a profile holds
no patient data, but the directory sits beside other private settings.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from pathlib import Path

from pivh_live.errors import ConfigError
from pivh_live.frames import Roi

log = logging.getLogger(__name__)

PROFILE_VERSION = 1
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_RESOLUTION = re.compile(r"^([1-9][0-9]{0,4})x([1-9][0-9]{0,4})$")


def profiles_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "pivh-live" / "profiles"


def profile_path(name: str) -> Path:
    if not _NAME.match(name):
        raise ConfigError(
            f"bad profile name {name!r}; use letters, digits, '.', '_' and '-' (e.g. voluson-e10)"
        )
    return profiles_dir() / f"{name}.json"


def resolution_key(width: int, height: int) -> str:
    return f"{width}x{height}"


def load_profile(name: str) -> dict[str, Roi]:
    """Resolution (``"1920x1080"``) -> ROI; raises `ConfigError` naming the bad key."""
    path = profile_path(name)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"no profile {name!r} at {path}; save one with the detected or given --roi first"
        ) from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read profile {path}: {exc}; fix or delete the file") from None
    return _parse(data, path)


def _parse(data: object, path: Path) -> dict[str, Roi]:
    if not isinstance(data, dict) or data.get("version") != PROFILE_VERSION:
        raise ConfigError(f'profile {path} must be a JSON object with "version": 1')
    unknown = set(data) - {"version", "rois"}
    if unknown:
        raise ConfigError(f"profile {path}: unknown key {sorted(unknown)[0]!r}")
    rois = data.get("rois", {})
    if not isinstance(rois, dict):
        raise ConfigError(f'profile {path}: "rois" must map "WxH" to {{x, y, w, h}}')
    out: dict[str, Roi] = {}
    for key, value in rois.items():
        if not _RESOLUTION.match(key):
            raise ConfigError(f"profile {path}: bad resolution key {key!r}; write e.g. 1920x1080")
        if not isinstance(value, dict) or set(value) != {"x", "y", "w", "h"}:
            raise ConfigError(f"profile {path}: rois[{key!r}] must have exactly x, y, w, h")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in value.values()):
            raise ConfigError(f"profile {path}: rois[{key!r}] values must be integers")
        roi = Roi(value["x"], value["y"], value["w"], value["h"])
        width, height = (int(g) for g in _RESOLUTION.match(key).groups())  # type: ignore[union-attr]
        inside = roi.x >= 0 and roi.y >= 0 and roi.x + roi.w <= width and roi.y + roi.h <= height
        if roi.w <= 0 or roi.h <= 0 or not inside:
            raise ConfigError(f"profile {path}: rois[{key!r}] does not fit a {key} frame")
        out[key] = roi
    return out


def profile_roi(name: str, width: int, height: int) -> Roi | None:
    """The saved ROI for this frame size, or None if the profile lacks it."""
    return load_profile(name).get(resolution_key(width, height))


def save_profile(name: str, resolution: str | tuple[int, int], roi: Roi) -> Path:
    """Add or replace the ROI for ``resolution`` in profile ``name``; returns the path."""
    path = profile_path(name)
    key = resolution if isinstance(resolution, str) else resolution_key(*resolution)
    rois = load_profile(name) if path.exists() else {}
    rois[key] = roi
    data = {
        "version": PROFILE_VERSION,
        "rois": {k: {"x": r.x, "y": r.y, "w": r.w, "h": r.h} for k, r in sorted(rois.items())},
    }
    _parse(data, path)  # the same checks as loading: never write a profile we cannot read
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)  # mkdir's mode is filtered by the umask
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:  # mkstemp creates it 0600
            json.dump(data, fh, indent=2)
            fh.write("\n")
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ConfigError(f"cannot write profile {path}: {exc.strerror}") from None
    log.info("saved ROI %s for %s in %s", roi, key, path)
    return path
