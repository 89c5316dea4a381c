"""ONNX Runtime engine (the default): CPU everywhere, CUDA when onnxruntime-gpu is installed."""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

import numpy as np

from pivh_live.bundle import OUTPUT_NAMES, ModelBundle
from pivh_live.engines.base import Engine, register_engine
from pivh_live.errors import EngineError

log = logging.getLogger(__name__)

_DEVICES = ("auto", "cpu", "cuda")


@register_engine("onnxruntime")
class OrtEngine(Engine):
    """ONNX Runtime session over the bundle's model.onnx.

    ``threads``: intra-op threads on the CPU provider (default 2: the live
    pipeline leaves the other cores to capture and display). ``device``:
    "auto" (CUDA provider when present, else CPU), "cpu" or "cuda" (error if
    the CUDA provider is missing). ``spin``: let idle worker threads
    busy-wait for the next call (ONNX Runtime's default). Off here: between
    frames a spinning pool burns a core that capture and display need, and
    on a 2-core machine that costs more latency than waking the pool does
    (docs/benchmarks.md).
    """

    def __init__(
        self, bundle: ModelBundle, *, threads: int = 2, device: str = "auto", spin: bool = False
    ) -> None:
        super().__init__(bundle)
        import onnxruntime as ort

        if device not in _DEVICES:
            raise EngineError(f"onnxruntime device must be one of {_DEVICES}, got {device!r}")
        if threads < 1:
            raise EngineError(f"onnxruntime threads must be >= 1, got {threads}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        flag = "1" if spin else "0"
        options.add_session_config_entry("session.intra_op.allow_spinning", flag)
        options.add_session_config_entry("session.inter_op.allow_spinning", flag)
        providers = self._providers(device, ort.get_available_providers())
        try:
            self._session = ort.InferenceSession(
                str(bundle.onnx_path), sess_options=options, providers=providers
            )
        except Exception as e:  # onnxruntime raises several unrelated types here
            raise EngineError(
                f"ONNX Runtime cannot open {bundle.onnx_path} ({str(e).strip()[:200]}); "
                "re-export the bundle"
            ) from e
        self.providers: list[str] = list(self._session.get_providers())
        self.threads = threads
        log.info("onnxruntime %s providers=%s threads=%d", ort.__version__, self.providers, threads)

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if importlib.util.find_spec("onnxruntime") is None:
            return "onnxruntime is not installed; pip install onnxruntime"
        return None

    @staticmethod
    def _providers(device: str, available: list[str]) -> list[Any]:
        has_cuda = "CUDAExecutionProvider" in available
        if device == "cuda" and not has_cuda:
            raise EngineError(
                "onnxruntime has no CUDA provider here; install onnxruntime-gpu "
                "(matching your CUDA) or use the engine option device=cpu"
            )
        if device == "cpu" or not has_cuda:
            return ["CPUExecutionProvider"]
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        batch = self._check_batch(batch)
        results = self._session.run(list(OUTPUT_NAMES), {"image": batch})
        return dict(zip(OUTPUT_NAMES, results, strict=True))

    def close(self) -> None:
        # Dropping the session frees its arena; ORT has no explicit close.
        self._session = None  # type: ignore[assignment]
