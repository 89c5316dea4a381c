"""Inference engines behind one interface, registered by name.

``create_engine(name, bundle, **options)`` with names "onnxruntime"
(default), "torch" (reference, needs the train extra) and "tensorrt";
``available_engines()`` says which can run here and why the others cannot.
Importing this package imports no backend.
"""

# Imported for their @register_engine side effect; each imports its backend lazily.
from pivh_live.engines import ort, tensorrt, torch_engine  # noqa: F401
from pivh_live.engines.base import (
    DEFAULT_ENGINE,
    Engine,
    available_engines,
    create_engine,
    engine_names,
    register_engine,
    scores_from_outputs,
)

# CPU threads for the engine in the live modes (`run`, `bench`) unless --threads says otherwise.
# The network is small: a second ONNX Runtime thread saves nothing per frame here
# (0.91 vs 0.92 ms median without spinning) while capture and display need that core
# (docs/benchmarks.md). Offline work (`evaluate`, `bench --mode engine`) keeps the engine's
# own default.
LIVE_CPU_THREADS = 1
_THREADED = ("onnxruntime", "torch")


def live_engine_options(engine: str, threads: int | None) -> dict[str, int]:
    """``threads`` (or `LIVE_CPU_THREADS`) for engines that take a thread count, else nothing."""
    if engine not in _THREADED:
        return {}
    return {"threads": LIVE_CPU_THREADS if threads is None else threads}


__all__ = [
    "DEFAULT_ENGINE",
    "LIVE_CPU_THREADS",
    "Engine",
    "available_engines",
    "create_engine",
    "engine_names",
    "live_engine_options",
    "register_engine",
    "scores_from_outputs",
]
