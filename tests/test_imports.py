"""`import pivh_live` and the runtime modules work without the heavy optional backends."""

from __future__ import annotations

import subprocess
import sys

RUNTIME_MODULES = [
    "pivh_live",
    "pivh_live.cli",
    "pivh_live.media",
    "pivh_live.dataset",
    "pivh_live.phantom",
    "pivh_live.preprocess",
    "pivh_live.bundle",
    "pivh_live.engines",
    "pivh_live.smoothing",
    "pivh_live.overlay",
    "pivh_live.transport",
    "pivh_live.sources",
    "pivh_live.region",
    "pivh_live.evaluation.evaluate",
    "pivh_live.bench.engine_loop",
    "pivh_live.pipeline",
    "pivh_live.pipeline.analyze",
    "pivh_live.pipeline.live",
    "pivh_live.recording",
    "pivh_live.recording.recorder",
    "pivh_live.doctor",
    "pivh_live.web",
]


def test_runtime_modules_do_not_import_torch_tensorrt_or_matplotlib() -> None:
    code = (
        "import importlib, sys\n"
        f"for m in {RUNTIME_MODULES!r}: importlib.import_module(m)\n"
        "heavy = [m for m in ('torch', 'tensorrt', 'matplotlib') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "", f"heavy backends imported at module import time: {out}"


def test_cli_builds_without_importing_heavy_backends() -> None:
    code = (
        "import sys\n"
        "from pivh_live.cli import build_parser\n"
        "build_parser()\n"
        "print(','.join(m for m in ('torch', 'tensorrt', 'matplotlib', 'av') "
        "if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == ""
