"""Starts, watches, restarts and stops the stage processes.

    with Supervisor([StageSpec("capture", "pivh_live.pipeline.processes:run_capture", cfg)],
                    endpoints) as sup:
        sup.start()
        while running:
            status = sup.poll()   # never blocks; returns the current PipelineStatus

Each stage runs in its own process (multiprocessing, spawn) under
`processes.stage_main` and pushes a heartbeat about once a second.

- exit code 0: the stage finished (a file source ended); it is not restarted.
- any other exit (an exception, a crash, SIGKILL) or no heartbeat for
  ``heartbeat_timeout_s``: the stage is restarted after a backoff (0.5, 1,
  2, 5, 5, ... s; back to the start after ``stable_s`` of running), and the
  status says "restarting" meanwhile, so the display can show it. A stage
  that fails ``max_fast_failures`` times in a row without ever sending a
  heartbeat is marked "failed" (a broken model or setting, not bad luck).
- `stop()`: SIGTERM to every stage, SIGKILL after ``stop_timeout_s``; each
  process is joined, so no orphans. A stage whose supervisor dies exits on
  its own (it watches its parent pid).
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any

from pivh_live.pipeline.config import Endpoints
from pivh_live.pipeline.messages import HEARTBEAT_KIND, status_to_message
from pivh_live.pipeline.results import SOURCE_STATES, PipelineStatus

log = logging.getLogger(__name__)

DEFAULT_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)


@dataclass(frozen=True)
class StageSpec:
    """One stage process: ``target`` is ``"module:function"`` called as f(config, stop, beat)."""

    name: str
    target: str
    config: Any
    restart: bool = True
    start_grace_s: float = 60.0  # to the first heartbeat: imports and engine loading take time
    heartbeat_timeout_s: float = 10.0


@dataclass
class _Stage:
    spec: StageSpec
    process: Any = None
    state: str = "starting"
    started: float = 0.0
    last_beat: float | None = None
    restart_at: float | None = None
    failures: int = 0  # consecutive, reset after stable running
    fast_failures: int = 0  # consecutive failures without a single heartbeat
    restarts: int = 0
    info: dict[str, Any] | None = None


class Supervisor:
    def __init__(
        self,
        stages: Sequence[StageSpec],
        endpoints: Endpoints,
        *,
        backoff_s: Sequence[float] = DEFAULT_BACKOFF_S,
        stable_s: float = 30.0,
        stop_timeout_s: float = 3.0,
        max_fast_failures: int = 5,
        status_every_s: float = 1.0,
        log_level: int = logging.INFO,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.endpoints = endpoints
        self._stages = {s.name: _Stage(s) for s in stages}
        self.backoff_s = tuple(backoff_s)
        self.stable_s = stable_s
        self.stop_timeout_s = stop_timeout_s
        self.max_fast_failures = max_fast_failures
        self.status_every_s = status_every_s
        self.log_level = log_level
        self._clock = clock
        self._ctx = multiprocessing.get_context("spawn")
        self._control: Any = None
        self._publisher: Any = None
        self._status: PipelineStatus | None = None
        self._next_publish = 0.0
        self._seq = 0

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        from pivh_live.transport import FramePublisher, ReliablePuller

        self._control = ReliablePuller(self.endpoints.control, bind=True, name="supervisor")
        self._publisher = FramePublisher(self.endpoints.status, name="status")
        for stage in self._stages.values():
            self._spawn(stage)

    def stop(self) -> None:
        """Terminate every stage and wait for it; SIGKILL what does not stop in time."""
        procs = [s.process for s in self._stages.values() if s.process is not None]
        for p in procs:
            if p.is_alive():
                p.terminate()
        deadline = time.monotonic() + self.stop_timeout_s
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
        for p in procs:
            if p.is_alive():
                log.warning("stage process %d did not stop in time; killing it", p.pid)
                p.kill()
                p.join(5.0)
        for stage in self._stages.values():
            if stage.state not in ("finished", "failed"):
                stage.state = "stopped"
            stage.process = None
        for sock in (self._control, self._publisher):
            if sock is not None:
                sock.close()
        self._control = self._publisher = None

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- watching ---------------------------------------------------------------------

    def poll(self) -> PipelineStatus:
        """Read heartbeats, reap and restart stages; publish and return the status."""
        now = self._clock()
        self._read_heartbeats(now)
        for stage in self._stages.values():
            self._check(stage, now)
        status = self._build_status()
        if status != self._status or now >= self._next_publish:
            self._publish(status, now)
        return status

    @property
    def status(self) -> PipelineStatus | None:
        return self._status

    def stage_state(self, name: str) -> str:
        return self._stages[name].state

    def stage_info(self, name: str) -> dict[str, Any] | None:
        """The stage's last heartbeat (its counters), or None."""
        return self._stages[name].info

    def pid(self, name: str) -> int | None:
        p = self._stages[name].process
        return p.pid if p is not None else None

    def restarts(self, name: str) -> int:
        return self._stages[name].restarts

    @property
    def failed(self) -> list[str]:
        return [n for n, s in self._stages.items() if s.state == "failed"]

    def _spawn(self, stage: _Stage) -> None:
        from pivh_live.pipeline.processes import stage_main

        spec = stage.spec
        stage.process = self._ctx.Process(
            target=stage_main,
            args=(spec.name, spec.target, spec.config, self.endpoints.control, self.log_level),
            name=f"pivh-{spec.name}",
            daemon=True,  # also terminated by multiprocessing if this process exits normally
        )
        stage.process.start()
        stage.state, stage.started, stage.last_beat, stage.restart_at = (
            "starting", self._clock(), None, None,
        )  # fmt: skip
        log.info("started %s (pid %d)", spec.name, stage.process.pid)

    def _read_heartbeats(self, now: float) -> None:
        if self._control is None:
            return
        for _ in range(1000):  # bounded: never starve the caller
            msg = self._control.recv(timeout_ms=0)
            if msg is None:
                return
            name = msg.metadata.get("stage")
            stage = self._stages.get(name) if isinstance(name, str) else None
            if msg.kind != HEARTBEAT_KIND or stage is None or stage.process is None:
                continue
            if msg.metadata.get("pid") != stage.process.pid:
                continue  # a late beat from a process already replaced
            stage.last_beat = now
            stage.info = dict(msg.metadata)
            if stage.state == "starting":
                stage.state = "running"
                stage.fast_failures = 0
                log.info("%s is running", name)

    def _check(self, stage: _Stage, now: float) -> None:
        spec = stage.spec
        if stage.state in ("finished", "failed", "stopped"):
            return
        if stage.restart_at is not None:
            if now >= stage.restart_at:
                self._spawn(stage)
            return
        p = stage.process
        if p is None:
            return
        if stage.state == "running" and now - stage.started >= self.stable_s:
            stage.failures = 0
        code = p.exitcode
        if code is None:
            limit = spec.heartbeat_timeout_s if stage.last_beat else spec.start_grace_s
            since = stage.last_beat if stage.last_beat is not None else stage.started
            if now - since <= limit:
                return
            log.error("%s sent no heartbeat for %.1f s; killing it", spec.name, now - since)
            p.kill()
            p.join(5.0)
            code = p.exitcode
        else:
            p.join(0)
        if code == 0:
            log.info("%s finished", spec.name)
            stage.state = "finished"
            return
        self._failed(stage, code, now)

    def _failed(self, stage: _Stage, code: int | None, now: float) -> None:
        spec = stage.spec
        if stage.last_beat is None:
            stage.fast_failures += 1
        how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        if not spec.restart or stage.fast_failures >= self.max_fast_failures:
            log.error("%s failed (%s); not restarting it", spec.name, how)
            stage.state = "failed"
            return
        delay = self.backoff_s[min(stage.failures, len(self.backoff_s) - 1)]
        stage.failures += 1
        stage.restarts += 1
        stage.state = "restarting"
        stage.restart_at = now + delay
        log.warning("%s stopped (%s); restarting in %.1f s", spec.name, how, delay)

    def _build_status(self) -> PipelineStatus:
        capture = self._stages.get("capture")
        info = (capture.info or {}) if capture is not None else {}
        source_state = info.get("source_state", "unknown")
        if source_state not in SOURCE_STATES:
            source_state = "unknown"
        status = PipelineStatus(
            t_ns=0,
            source_state=source_state,
            source_message=str(info.get("source_message", "")),
            stages=tuple((n, s.state) for n, s in self._stages.items()),
            restarts=sum(s.restarts for s in self._stages.values()),
        )
        return status

    def _publish(self, status: PipelineStatus, now: float) -> None:
        self._status = status
        self._next_publish = now + self.status_every_s
        if self._publisher is None:
            return
        stamped = replace(status, t_ns=time.monotonic_ns())
        self._publisher.send(status_to_message(stamped, self._seq))
        self._seq += 1
