"""TensorRT 10 engine: a serialized engine built from the bundle's model.onnx, run with enqueueV3.

CUDA memory and the stream come from torch.cuda (torch is on Jetson through
NVIDIA's wheels), so no pycuda / cuda-python is needed. Buffers are sized
once for the engine's largest batch; inputs go through a pinned host buffer.
With ``cuda_graph=True`` each batch size's ``execute_async_v3`` is captured
once into a CUDA graph and replayed, which removes most per-call launch cost;
each batch size gets its own execution context, because a captured graph
bakes in the input shape and the context state it was captured with.

Preprocessing stays on the CPU: a captured frame is in host memory, and
uploading a whole 1080p frame to letterbox it on the GPU moves ~25x more
bytes than the 256x256 float input (the CPU letterbox takes 0.3-0.7 ms).

A TensorRT engine only runs on the TensorRT version and GPU it was built
for, and only means something for the ONNX it was built from: every engine
file has a stamp ``<engine>.json`` beside it (written by
``tensorrt_build.build_engine``) that is checked before the engine loads.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from pivh_live.bundle import INPUT_NAME, OUTPUT_NAMES, ModelBundle
from pivh_live.engines.base import Engine, register_engine
from pivh_live.errors import EngineError

log = logging.getLogger(__name__)

ENGINE_FILE = "model.engine"
STAMP_SCHEMA = "pivh-live-trt-engine/1"
TRT_MISSING = (
    "the TensorRT Python package is not installed (Jetson: it comes with JetPack, "
    "apt install python3-libnvinfer; x86: pip install tensorrt)"
)
TORCH_MISSING = "torch with CUDA is needed for TensorRT buffers; install NVIDIA's torch wheel"
_REPORT = "the engine may be damaged: rebuild it with `pivh-live build-engine`"


@dataclass(frozen=True)
class EngineStamp:
    """What a serialized engine was built for; stored as JSON beside the engine."""

    tensorrt: str
    gpu: str
    compute_capability: str
    bundle_sha256: str
    precision: str = "fp32"
    max_batch: int = 8
    created: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"schema": STAMP_SCHEMA, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EngineStamp:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def default_engine_path(bundle: ModelBundle) -> Path:
    return bundle.path / ENGINE_FILE


def stamp_path(engine_path: str | Path) -> Path:
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def rebuild_hint(engine_path: Path) -> str:
    return (
        f"rebuild it on this machine with `pivh-live build-engine "
        f"{engine_path.parent} --out {engine_path}`"
    )


def read_stamp(engine_path: str | Path) -> EngineStamp:
    engine_path = Path(engine_path)
    path = stamp_path(engine_path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EngineError(
            f"{path} is missing, so {engine_path.name} cannot be checked; "
            f"{rebuild_hint(engine_path)}"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise EngineError(f"{path} is not valid JSON ({e}); {rebuild_hint(engine_path)}") from e
    if not isinstance(data, dict) or data.get("schema") != STAMP_SCHEMA:
        raise EngineError(f"{path} is not a {STAMP_SCHEMA} stamp; {rebuild_hint(engine_path)}")
    try:
        return EngineStamp.from_dict(data)
    except TypeError as e:
        raise EngineError(f"{path} lacks fields ({e}); {rebuild_hint(engine_path)}") from e


def stamp_mismatches(stamp: EngineStamp, current: EngineStamp) -> list[str]:
    """Human-readable differences that make an engine unusable (empty when it fits).

    ``current`` holds the running system's TensorRT version, GPU name and
    compute capability and the bundle's model.onnx hash; precision, batch and
    date are not compared.
    """
    labels = {
        "tensorrt": "TensorRT version",
        "gpu": "GPU",
        "compute_capability": "compute capability",
        "bundle_sha256": "model.onnx sha256",
    }
    out = []
    for key, label in labels.items():
        built, now = getattr(stamp, key), getattr(current, key)
        if built != now:
            if key == "bundle_sha256":
                built, now = built[:12], now[:12]
            out.append(f"{label} {built} (engine) != {now} (here)")
    return out


def check_stamp(stamp: EngineStamp, current: EngineStamp, engine_path: Path) -> None:
    problems = stamp_mismatches(stamp, current)
    if problems:
        raise EngineError(
            f"TensorRT engine {engine_path} was built for another setup ({'; '.join(problems)}); "
            f"{rebuild_hint(engine_path)}"
        )


def current_system(bundle_sha256: str, device: int = 0) -> EngineStamp:
    """Stamp fields of this machine (needs tensorrt and torch with CUDA)."""
    import tensorrt as trt
    import torch

    major, minor = torch.cuda.get_device_capability(device)
    return EngineStamp(
        tensorrt=str(trt.__version__),
        gpu=str(torch.cuda.get_device_name(device)),
        compute_capability=f"{major}.{minor}",
        bundle_sha256=bundle_sha256,
    )


def _torch_dtype(torch: Any, np_dtype: Any) -> Any:
    return torch.from_numpy(np.empty(0, dtype=np_dtype)).dtype


def _tensorrt_unavailable() -> str | None:
    if importlib.util.find_spec("tensorrt") is None:
        return TRT_MISSING
    if importlib.util.find_spec("torch") is None:
        return TORCH_MISSING
    return None


@register_engine("tensorrt")
class TensorRTEngine(Engine):
    """Serialized TensorRT engine over the bundle's model.

    ``engine_path``: the engine file (default ``<bundle>/model.engine``);
    ``cuda_graph``: capture and replay CUDA graphs per batch size;
    ``device``: CUDA device index.
    """

    def __init__(
        self,
        bundle: ModelBundle,
        *,
        engine_path: str | Path | None = None,
        cuda_graph: bool = False,
        device: int = 0,
    ) -> None:
        super().__init__(bundle)
        import tensorrt as trt
        import torch

        if not torch.cuda.is_available():
            raise EngineError("torch sees no CUDA GPU, so TensorRT cannot run; use onnxruntime")
        path = Path(engine_path) if engine_path is not None else default_engine_path(bundle)
        if not path.is_file():
            raise EngineError(f"TensorRT engine {path} not found; {rebuild_hint(path)}")
        check_stamp(read_stamp(path), current_system(bundle.onnx_sha256, device), path)
        torch.cuda.set_device(device)
        self._torch = torch
        self._trt_logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._trt_logger)
        self._engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if self._engine is None:
            raise EngineError(f"TensorRT could not deserialize {path}; {rebuild_hint(path)}")
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise EngineError(f"TensorRT could not create an execution context for {path}")
        self._check_io(trt, path)
        self.max_batch = int(self._engine.get_tensor_profile_shape(INPUT_NAME, 0)[2][0])
        self.cuda_graph = cuda_graph
        self.engine_path = path
        self._stream = torch.cuda.Stream(device=device)
        self._allocate(trt)
        self._bind(self._context)
        self._shape_n = 0
        # batch size -> (execution context, CUDA graph); the first reuses self._context.
        self._graphs: dict[int, tuple[Any, Any]] = {}
        log.info("tensorrt %s engine %s max_batch=%d", trt.__version__, path, self.max_batch)

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return _tensorrt_unavailable()

    def _check_io(self, trt: Any, path: Path) -> None:
        engine = self._engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = sorted(n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
        if inputs != [INPUT_NAME] or outputs != sorted(OUTPUT_NAMES):
            raise EngineError(
                f"{path} has inputs {inputs} and outputs {outputs}, not the bundle's; "
                f"{rebuild_hint(path)}"
            )

    def _allocate(self, trt: Any) -> None:
        torch = self._torch
        self._device_buf: dict[str, Any] = {}
        self._host_out: dict[str, Any] = {}
        for name in (INPUT_NAME, *OUTPUT_NAMES):
            shape = list(self._engine.get_tensor_shape(name))
            shape[0] = self.max_batch
            dtype = _torch_dtype(torch, trt.nptype(self._engine.get_tensor_dtype(name)))
            self._device_buf[name] = torch.empty(shape, dtype=dtype, device="cuda")
            if name != INPUT_NAME:
                self._host_out[name] = torch.empty(shape, dtype=dtype, pin_memory=True)
        in_shape = list(self._device_buf[INPUT_NAME].shape)
        self._host_in = torch.empty(in_shape, dtype=torch.float32, pin_memory=True)

    def _bind(self, context: Any) -> None:
        # Addresses never change (buffers hold the largest batch), so set them once per context.
        for name, buf in self._device_buf.items():
            if not context.set_tensor_address(name, int(buf.data_ptr())):
                raise EngineError(f"TensorRT rejected the buffer for {name}; {_REPORT}")

    def _set_shape(self, context: Any, n: int) -> None:
        size = self.bundle.input_size
        if not context.set_input_shape(INPUT_NAME, (n, 1, size, size)):
            raise EngineError(f"TensorRT rejected batch {n}; the engine takes 1..{self.max_batch}")

    def _enqueue(self, context: Any) -> None:
        if not context.execute_async_v3(self._stream.cuda_stream):
            raise EngineError("TensorRT execute_async_v3 failed; see the TensorRT log above")

    def _execute(self, n: int) -> None:
        if not self.cuda_graph:
            if n != self._shape_n:
                self._set_shape(self._context, n)
                self._shape_n = n
            self._enqueue(self._context)
            return
        entry = self._graphs.get(n)
        if entry is None:
            entry = self._capture(n)
            self._graphs[n] = entry
        entry[1].replay()

    def _capture(self, n: int) -> tuple[Any, Any]:
        torch = self._torch
        context = self._context if not self._graphs else self._engine.create_execution_context()
        if context is None:
            raise EngineError(f"TensorRT could not create an execution context; {_REPORT}")
        self._bind(context)
        self._set_shape(context, n)
        # One plain run first: TensorRT does shape-dependent setup on the first
        # enqueue after set_input_shape, which must not land inside the capture.
        self._enqueue(context)
        self._stream.synchronize()
        graph = torch.cuda.CUDAGraph()
        # thread_local: CUDA calls from other threads (capture, display) must not
        # invalidate this capture.
        with torch.cuda.graph(graph, stream=self._stream, capture_error_mode="thread_local"):
            self._enqueue(context)
        return context, graph

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        batch = self._check_batch(batch)
        torch = self._torch
        n = batch.shape[0]
        self._host_in[:n].copy_(torch.from_numpy(batch))
        with torch.cuda.stream(self._stream):
            dev_in = self._device_buf[INPUT_NAME]
            dev_in[:n].copy_(self._host_in[:n], non_blocking=True)
            self._execute(n)
            for name in OUTPUT_NAMES:
                self._host_out[name][:n].copy_(self._device_buf[name][:n], non_blocking=True)
        self._stream.synchronize()
        return {name: self._host_out[name][:n].float().numpy().copy() for name in OUTPUT_NAMES}

    def close(self) -> None:
        # Free in dependency order: graphs, then contexts, then the engine and runtime.
        for _context, graph in self._graphs.values():
            graph.reset()
        self._graphs = {}
        self._context = None
        self._engine = None
        self._runtime = None
