"""Supervisor behaviour with tiny stage targets: finish, crash, hang, status snapshots."""

from __future__ import annotations

import itertools
import os
import time

import pytest

from pivh_live.pipeline.config import Endpoints
from pivh_live.pipeline.messages import status_from_message
from pivh_live.pipeline.results import PipelineStatus
from pivh_live.pipeline.supervisor import StageSpec, Supervisor
from pivh_live.transport import LatestSubscriber

pytestmark = pytest.mark.slow
_ids = itertools.count()


def _endpoints() -> Endpoints:
    return Endpoints.for_run(f"s{os.getpid()}x{next(_ids)}")


def _poll_until(
    sup: Supervisor, sub: LatestSubscriber, predicate, seen: list[PipelineStatus]
) -> None:
    """Poll the supervisor until ``predicate()``; each loop waits up to 20 ms for a status."""
    deadline = time.monotonic() + 30
    while not predicate():
        assert time.monotonic() < deadline, f"timed out; status {sup.status}"
        sup.poll()
        msg = sub.recv_latest(20)
        if msg is not None:
            seen.append(status_from_message(msg))


def test_finished_crashed_and_failed_stages() -> None:
    endpoints = _endpoints()
    specs = [
        StageSpec("done", "pipeline_fakes:stage_exit", 0),
        StageSpec("crash", "pipeline_fakes:stage_exit", 3),
        StageSpec("healthy", "pipeline_fakes:stage_beating", None),
    ]
    seen: list[PipelineStatus] = []
    with (
        Supervisor(specs, endpoints, backoff_s=(0.05,), max_fast_failures=2) as sup,
        LatestSubscriber(endpoints.status, name="watch") as sub,
    ):
        sup.start()
        first = sup.pid("healthy")

        def settled() -> bool:
            return sup.failed == ["crash"] and sup.stage_state("done") == "finished"

        _poll_until(sup, sub, settled, seen)
        assert sup.restarts("crash") == 1  # tried again once, then gave up: it never started
        _poll_until(sup, sub, lambda: sup.stage_state("healthy") == "running", seen)
        assert sup.pid("healthy") == first and sup.stage_info("healthy")["loops"] >= 1
        status = sup.poll()
        assert dict(status.stages) == {"done": "finished", "crash": "failed", "healthy": "running"}
        assert status.display_status == "restarting"
        # Each change went out at once: the subscriber's newest snapshot is the final state.
        msg = sub.recv_latest(0)
        if msg is not None:
            seen.append(status_from_message(msg))
        assert seen[-1].stages == status.stages
    assert sup.stage_state("healthy") == "stopped" and sup.pid("healthy") is None


def test_a_hung_stage_is_killed_and_restarted_and_status_is_published() -> None:
    endpoints = _endpoints()
    spec = StageSpec("hung", "pipeline_fakes:stage_silent", None, start_grace_s=1.0)
    seen: list[PipelineStatus] = []
    with (
        Supervisor([spec], endpoints, backoff_s=(0.5,), max_fast_failures=10) as sup,
        LatestSubscriber(endpoints.status, name="watch") as sub,
    ):
        sup.start()
        first = sup.pid("hung")
        _poll_until(sup, sub, lambda: sup.pid("hung") not in (None, first), seen)
        assert sup.restarts("hung") == 1 and sup.stage_state("hung") == "starting"
    states = [dict(s.stages)["hung"] for s in seen]
    # The first snapshots may go out before the subscription arrives (slow joiner).
    assert "restarting" in states and states[-1] == "starting"
    assert {s.display_status for s in seen} == {"starting", "restarting"}
