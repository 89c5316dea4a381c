"""CSV reading, constants and problem formatting shared by the dataset readers."""

from __future__ import annotations

import csv
import json
import logging
import re
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

LABELS_FILE = "labels.csv"
FRAMES_SUFFIX = ".frames.csv"
MASKS_SUFFIX = ".masks.npz"
META_FILE = "phantom.json"  # the generator's record of a phantom dataset
MAX_LISTED = 10
_INT = re.compile(r"^[+-]?\d{1,9}$")  # bounded: int() of huge digit strings raises
_HINT = "see docs/dataset.md"


def read_dataset_meta(data_dir: Path) -> dict[str, Any] | None:
    """DIR/phantom.json as a dict, or None when absent or unreadable.

    It only describes the data (for cards and reports), so an unreadable one
    is logged and left out rather than stopping the command.
    """
    path = Path(data_dir) / META_FILE
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        log.warning("cannot read %s (%s); its dataset meta is not recorded", path, e)
        return None
    return meta if isinstance(meta, dict) else None


def _summary(where: Path, problems: list[str]) -> str:
    listed = "; ".join(problems[:MAX_LISTED])
    more = len(problems) - MAX_LISTED
    rest = f"; and {more} more (pivh-live check-data lists all)" if more > 0 else ""
    return f"{where}: {len(problems)} problem(s): {listed}{rest}; {_HINT}"


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _read_csv(
    path: Path, problems: list[str]
) -> tuple[list[str], list[tuple[int, list[str]]]] | None:
    """Header (lower-cased) and non-blank rows with their 1-based line numbers."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                problems.append(f"{path.name} is empty; its first line must be the header")
                return None
            body = []
            for row in reader:
                if any(cell.strip() for cell in row):
                    body.append((reader.line_num, [cell.strip() for cell in row]))
    except UnicodeDecodeError:
        problems.append(f"{path.name} is not UTF-8 text; save it as CSV UTF-8")
        return None
    except csv.Error as exc:
        problems.append(f"{path.name} line {reader.line_num}: {exc}")
        return None
    except OSError as exc:
        problems.append(f"cannot read {path.name}: {exc.strerror}")
        return None
    return [h.strip().lower() for h in header], body


def _check_header(
    name: str,
    header: list[str],
    required: tuple[str, ...],
    optional: tuple[str, ...],
    problems: list[str],
) -> bool:
    ok = True
    for column in sorted({h for h in header if header.count(h) > 1 and h}):
        problems.append(f"{name} line 1: column '{column}' appears more than once")
        ok = False
    missing = [c for c in required if c not in header]
    if missing:
        problems.append(
            f"{name} line 1: missing required column(s) {','.join(missing)} "
            f"(header must include {','.join(required)})"
        )
        ok = False
    unknown = [h or "(unnamed)" for h in header if h not in required + optional]
    if unknown:
        log.warning("%s: ignoring unknown column(s) %s", name, ", ".join(unknown))
    return ok
