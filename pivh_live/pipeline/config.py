"""Settings of the multi-process pipeline: endpoints and per-stage configs (frozen, picklable).

The configs travel to the stage processes as `multiprocessing` spawn
arguments (between our own processes, never over a socket).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pivh_live.errors import ConfigError
from pivh_live.frames import Roi

ENDPOINT_NAMES = ("frames", "results", "record", "status", "control")
_RUN_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,40}")


@dataclass(frozen=True)
class Endpoints:
    """ZeroMQ addresses of one pipeline run (docs/pipeline.md).

    ``frames``: capture's region frames, newest-wins (XPUB). ``record``: the
    same frames, every one, to a recorder (PUSH). ``results``: inference
    results, newest-wins (XPUB). ``status``: `PipelineStatus` snapshots from
    the supervisor (XPUB). ``control``: stage heartbeats to the supervisor
    (PUSH -> PULL).
    """

    frames: str
    results: str
    record: str
    status: str
    control: str

    @classmethod
    def for_run(cls, run_id: str | None = None, base: Path | None = None) -> Endpoints:
        """``ipc://`` endpoints in `transport.runtime_dir()`, named ``<run_id>-<name>``."""
        from pivh_live.transport import endpoint

        run_id = run_id or f"p{os.getpid()}"
        if not _RUN_ID.fullmatch(run_id):
            raise ConfigError(f"run id {run_id!r} must match {_RUN_ID.pattern}")
        return cls(*(endpoint(f"{run_id}-{name}", base=base) for name in ENDPOINT_NAMES))

    def remove_files(self) -> None:
        """Delete this run's ipc socket files (libzmq leaves them behind)."""
        for address in (self.frames, self.results, self.record, self.status, self.control):
            if address.startswith("ipc://"):
                Path(address[len("ipc://") :]).unlink(missing_ok=True)


@dataclass(frozen=True)
class CaptureConfig:
    """Capture stage: source spec, ROI choice, whether to feed a recorder."""

    endpoints: Endpoints
    source: str = "phantom:"
    roi: Roi | None = None
    profile: str | None = None
    auto_roi: bool = True
    record: bool = False
    stall_s: float = 2.0
    heartbeat_s: float = 1.0


@dataclass(frozen=True)
class InferenceConfig:
    """Inference stage: the bundle and engine, or ``engine_factory`` ``"module:function"``.

    ``plugins`` are modules imported first (e.g. ones that register engines).
    """

    endpoints: Endpoints
    model: Path | None = None
    engine: str = "onnxruntime"
    engine_options: dict[str, Any] = field(default_factory=dict)
    engine_factory: str | None = None
    plugins: tuple[str, ...] = ()
    heartbeat_s: float = 1.0


@dataclass(frozen=True)
class LiveConfig:
    """Everything `run_live` needs; see `pivh-live run --help` for the meaning of each."""

    source: str = "phantom:"
    model: Path | None = None
    engine: str = "onnxruntime"
    engine_options: dict[str, Any] = field(default_factory=dict)
    engine_factory: str | None = None
    plugins: tuple[str, ...] = ()
    roi: Roi | None = None
    profile: str | None = None
    auto_roi: bool = True
    record: bool = False
    run_id: str | None = None
    runtime_base: Path | None = None
    stall_s: float = 2.0
    log_level: int = logging.INFO
    # Once capture has finished (a file without loop), stop after this long without results.
    drain_s: float = 1.0
