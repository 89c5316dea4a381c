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

__all__ = [
    "DEFAULT_ENGINE",
    "Engine",
    "available_engines",
    "create_engine",
    "engine_names",
    "register_engine",
    "scores_from_outputs",
]
