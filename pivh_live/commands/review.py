"""Serve the recorded sessions in a browser, without the live pipeline, until Ctrl-C.

Session list, per-session player with the results overlay, timeline,
findings with keyframes, HTML/PDF report export and delete (docs/web.md).
Bound to 127.0.0.1 by default; any other --host needs the access token
printed once on this console.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; any "
                   "other address requires the access token printed at start)")  # fmt: skip
    p.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    p.add_argument(
        "--data",
        "--data-dir",
        dest="data",
        type=Path,
        default=None,
        help="session store (default: $PIVH_LIVE_DATA, else $XDG_DATA_HOME/pivh-live)",
    )
    p.add_argument(
        "--model",
        type=Path,
        action="append",
        default=[],
        metavar="BUNDLE",
        help="model bundle (or a folder of bundles) whose card the reports summarise; "
        "repeatable (default: $PIVH_LIVE_MODEL and the shipped models)",
    )


def main(args: argparse.Namespace) -> int:
    import logging
    import signal
    import threading
    from typing import Any

    from pivh_live.errors import ConfigError
    from pivh_live.recording import SessionStore
    from pivh_live.web.app import create_app
    from pivh_live.web.auth import is_loopback, new_token
    from pivh_live.web.server import WebServer, announce
    from pivh_live.web.timeline import CardFinder

    log = logging.getLogger("pivh_live.review")
    if not 0 <= args.port < 65536:
        raise ConfigError(f"--port must be 0-65535 (0: any free port), got {args.port}")
    store = SessionStore(args.data)
    if store.root.is_dir():
        store.recover()  # sessions left "recording" by a crash become "interrupted"
    else:
        log.warning("no session store at %s yet; the list is empty", store.root)
    token = None if is_loopback(args.host) else new_token()
    app = create_app(store=store, token=token, cards=CardFinder(args.model))
    server = WebServer(app, args.host, args.port).start()
    announce(server.url if token is None else server.public_url, token)
    log.info("serving %d sessions from %s; press Ctrl-C to stop",
             len(store.list_sessions()), store.root)  # fmt: skip

    done = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        done.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not done.wait(0.5):
            if not server.running:
                raise ConfigError("the web server stopped unexpectedly; see the log above")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.stop()
    log.info("stopped")
    return 0
