"""Reference PyTorch engine: runs the bundle's model.pt with pivh_live.training.network.PivhNet.

Used to check the ONNX and TensorRT engines against the training code; needs
the ``train`` extra (torch).
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

import numpy as np

from pivh_live.bundle import OUTPUT_NAMES, ModelBundle
from pivh_live.engines.base import Engine, register_engine
from pivh_live.errors import EngineError

log = logging.getLogger(__name__)

TORCH_MISSING = "torch is not installed; pip install 'pivh-live[train]'"


def outputs_as_dict(outputs: Any) -> dict[str, Any]:
    """PivhNet's forward result (tuple in OUTPUT_NAMES order, or a dict) -> dict by name."""
    if isinstance(outputs, dict):
        return {name: outputs[name] for name in OUTPUT_NAMES}
    return dict(zip(OUTPUT_NAMES, outputs, strict=True))


def load_torch_model(weights: dict[str, Any]) -> Any:
    """{"model_config", "state_dict"} -> PivhNet in eval mode (on the CPU)."""
    from pivh_live.training.network import ModelConfig, PivhNet

    raw = dict(weights["model_config"])
    if hasattr(ModelConfig, "from_dict"):
        config = ModelConfig.from_dict(raw)
    else:
        config = ModelConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
    model = PivhNet(config)
    model.load_state_dict(weights["state_dict"])
    return model.eval()


@register_engine("torch")
class TorchEngine(Engine):
    """PivhNet in eval mode under torch.inference_mode.

    ``device``: "auto" (CUDA when available), "cpu" or "cuda". ``threads``:
    torch intra-op threads on the CPU (None leaves torch's setting alone).
    ``cuda_graph`` (CUDA only, default on): each batch size is captured once
    as a CUDA graph and replayed, so a call costs one graph launch instead of
    one launch per layer (a network this small is launch-bound at batch 1). A
    capture that fails falls back to eager calls with a warning.
    """

    def __init__(
        self,
        bundle: ModelBundle,
        *,
        device: str = "auto",
        threads: int | None = None,
        cuda_graph: bool = True,
    ) -> None:
        super().__init__(bundle)
        if bundle.torch_path is None:
            raise EngineError(
                f"bundle {bundle.path} has no model.pt; re-export it with `pivh-live export` "
                "or use the onnxruntime engine"
            )
        import torch

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device not in ("cpu", "cuda"):
            raise EngineError(f"torch device must be 'auto', 'cpu' or 'cuda', got {device!r}")
        if device == "cuda" and not torch.cuda.is_available():
            raise EngineError("torch sees no CUDA GPU here; use device=cpu")
        if threads is not None:
            torch.set_num_threads(threads)
        weights = torch.load(bundle.torch_path, map_location="cpu", weights_only=True)
        try:
            self._model = load_torch_model(weights).to(device)
        except (KeyError, RuntimeError, TypeError) as e:
            raise EngineError(
                f"{bundle.torch_path} does not fit PivhNet ({str(e).splitlines()[0]}); "
                "re-export the bundle"
            ) from e
        self._torch = torch
        self.device = torch.device(device)
        self._graphs: CudaGraphs | None = (
            CudaGraphs(self._model, self.device) if cuda_graph and device == "cuda" else None
        )
        log.info(
            "torch %s engine on %s%s",
            torch.__version__,
            self.device,
            " (CUDA graphs)" if self._graphs is not None else "",
        )

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if importlib.util.find_spec("torch") is None:
            return TORCH_MISSING
        return None

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        batch = self._check_batch(batch)
        torch = self._torch
        if self._graphs is not None:
            outputs = self._graphs.run(batch)
            if outputs is not None:
                return outputs
            if self._graphs.failed:
                self._graphs = None  # eager from now on
        with torch.inference_mode():
            x = torch.from_numpy(batch).to(self.device, non_blocking=False)
            outputs = outputs_as_dict(self._model(x))
            return {k: v.float().cpu().numpy() for k, v in outputs.items()}

    def close(self) -> None:
        self._model = None
        self._graphs = None


class CudaGraphs:
    """One captured CUDA graph per batch size, with static input and output tensors.

    ``run`` copies the batch into the static input, replays the graph and
    returns fresh host arrays (never the static buffers, which the next replay
    overwrites). Returns None when the call must run eager: a new batch size
    beyond ``MAX_GRAPHS``, or a failed capture (logged; ``failed`` is then set).
    """

    MAX_GRAPHS = 4  # distinct batch sizes kept; more fall back to eager calls

    def __init__(self, model: Any, device: Any) -> None:
        import torch

        self._torch = torch
        self._model = model
        self._device = device
        self._graphs: dict[tuple[int, ...], tuple[Any, Any, dict[str, Any]]] = {}
        self.failed = False

    def _capture(self, shape: tuple[int, ...]) -> tuple[Any, Any, dict[str, Any]]:
        torch = self._torch
        static_in = torch.zeros(shape, dtype=torch.float32, device=self._device)
        stream = torch.cuda.Stream(device=self._device)
        stream.wait_stream(torch.cuda.current_stream(self._device))
        with torch.no_grad():
            with torch.cuda.stream(stream):  # warm-up: cuDNN picks its kernels off-graph
                for _ in range(3):
                    self._model(static_in)
            torch.cuda.current_stream(self._device).wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = outputs_as_dict(self._model(static_in))
        return graph, static_in, static_out

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray] | None:
        torch = self._torch
        key = tuple(batch.shape)
        entry = self._graphs.get(key)
        if entry is None:
            if len(self._graphs) >= self.MAX_GRAPHS:
                return None  # this call runs eager
            try:
                entry = self._capture(key)
            except RuntimeError as e:
                log.warning("CUDA graph capture failed (%s); running eager", str(e).splitlines()[0])
                self.failed = True
                return None
            self._graphs[key] = entry
            log.info("captured a CUDA graph for batch shape %s", key)
        graph, static_in, static_out = entry
        static_in.copy_(torch.from_numpy(batch))
        graph.replay()
        # A copy to the host (synchronising on CUDA): never a view of the static outputs.
        return {
            k: v.to("cpu", dtype=torch.float32, copy=True).numpy() for k, v in static_out.items()
        }
