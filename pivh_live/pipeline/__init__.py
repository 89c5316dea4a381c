"""The live pipeline: stages, single- and multi-process modes, consumers, offline analyze.

Stage logic (`stages`) is plain Python with one per-frame method and no
sockets; `single` runs it in one loop, `processes` + `supervisor` run it as
supervised processes joined by ZeroMQ (`pivh_live.transport`), `host` feeds
results to consumers, `analyze` runs recorded clips through the single-process
path. See docs/pipeline.md and docs/analyze.md.
"""

from pivh_live.pipeline.consumers import (
    CallbackConsumer,
    JsonlResultWriter,
    LiveStats,
    OverlayVideoWriter,
    StatusReporter,
    frame_record,
)
from pivh_live.pipeline.results import (
    BaseConsumer,
    FrameResult,
    PipelineStatus,
    RegionFrame,
    ResultConsumer,
)
from pivh_live.pipeline.single import RunStats, SinglePipeline
from pivh_live.pipeline.stages import (
    InferenceStage,
    OverlayStage,
    RegionStage,
    region_motion,
    smoothing_config,
)

__all__ = [
    "BaseConsumer",
    "CallbackConsumer",
    "FrameResult",
    "InferenceStage",
    "JsonlResultWriter",
    "LiveStats",
    "OverlayStage",
    "OverlayVideoWriter",
    "PipelineStatus",
    "RegionFrame",
    "RegionStage",
    "ResultConsumer",
    "RunStats",
    "SinglePipeline",
    "StatusReporter",
    "frame_record",
    "region_motion",
    "smoothing_config",
]
