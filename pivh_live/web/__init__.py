"""The bedside live display and the review pages, as a local web app (docs/web.md).

`LiveDisplay` is the pipeline consumer; it feeds a `FrameHub` that the web
server reads. `serve_live` hosts the live page in the pipeline's process;
`create_app` builds the Starlette app (live and/or review); ``pivh-live
review`` serves recorded sessions alone. Starlette and uvicorn are imported
only by the modules that need them.
"""

from pivh_live.web.live import EncodedFrame, FrameHub, LiveDisplay

__all__ = ["EncodedFrame", "FrameHub", "LiveDisplay"]
