"""Session recording and the session store (docs/recording.md).

`SessionStore` reads and manages recorded sessions (the review app uses it);
`Recorder` is the pipeline consumer that records one; `retention` keeps the
disk from filling. Heavy parts (PyAV, OpenCV) are imported where used.
"""

from pivh_live.recording.store import (
    Finding,
    InvalidSessionIdError,
    Keyframe,
    SessionBusyError,
    SessionError,
    SessionInfo,
    SessionMeta,
    SessionStore,
    UnknownSessionError,
    data_root,
    source_kind_of,
    validate_session_id,
)

__all__ = [
    "Finding",
    "InvalidSessionIdError",
    "Keyframe",
    "SessionBusyError",
    "SessionError",
    "SessionInfo",
    "SessionMeta",
    "SessionStore",
    "UnknownSessionError",
    "data_root",
    "source_kind_of",
    "validate_session_id",
]
