"""The GPU machine has no PyAV, pyzmq, pydicom (and maybe no tqdm, matplotlib, Pillow):
a single-process benchmark must run without them (scripts/device_bench.sh)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BLOCKER = """
import importlib.abc, sys
BLOCK = {"av", "zmq", "pydicom", "tqdm", "matplotlib", "PIL"}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in BLOCK:
            raise ImportError("blocked " + name)
sys.meta_path.insert(0, Block())
"""


def test_single_process_bench_runs_without_av_zmq_tqdm_matplotlib(tmp_path):
    here = Path(__file__).parent
    code = (
        BLOCKER
        + f"""
sys.path.insert(0, {str(here)!r})
from bench_fakes import write_cached_clip
from pivh_live.cli import build_parser
from pivh_live.bench.pipeline_bench import BenchConfig
from pivh_live.bench.runner import run_bench
build_parser()
cache = __import__("pathlib").Path({str(tmp_path)!r}) / "cache"
write_cached_clip(cache, n=12)
config = BenchConfig(fps=0.0, resolution=(240, 180), duration_s=None, frames=30,
                     single_process=True, engine_factory="bench_fakes:make_fixed_engine",
                     roi="known", clip_frames=12, out=cache.parent / "out", cache_dir=cache)
report = run_bench(config, "all", progress=True, engine_calls=30, plots=True)
print(__import__("json").dumps({{"kept": report["pipeline"]["instances"][0]["kept"],
    "warnings": report["warnings"],
    "loaded": sorted(m for m in ("av", "zmq", "pydicom", "tqdm", "matplotlib", "PIL")
                     if m in sys.modules)}}))
"""
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["kept"] == 10
    assert result["loaded"] == []
    assert "no plots: matplotlib is not installed" in result["warnings"]
