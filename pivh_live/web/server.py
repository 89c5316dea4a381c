"""Serve the web app with uvicorn in a background thread (``pivh-live run``, ``review``, tests).

The listening socket is made here: port 0 picks a free port (tests), and a
small send buffer keeps at most a few frames queued in the kernel for a slow
client, so a display that falls behind is a frame or two late, not seconds.
uvicorn's access log is off (a ``?token=`` query would otherwise be logged)
and it does not touch the logging configuration or signal handlers.
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
from typing import TYPE_CHECKING, Any, TextIO

from starlette.applications import Starlette

from pivh_live.errors import ConfigError
from pivh_live.web.auth import is_loopback, new_token
from pivh_live.web.live import FrameHub, LiveDisplay

if TYPE_CHECKING:
    from pivh_live.overlay import OverlaySettings

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
SEND_BUFFER = 256 * 1024


class WebServer:
    """uvicorn serving ``app`` on ``host:port`` in a daemon thread; ``start``/``stop``."""

    def __init__(self, app: Starlette, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def public_url(self) -> str:
        """The address other machines use (the host name when bound to every interface)."""
        return public_url(self.host, self.port)

    def start(self, timeout_s: float = 15.0) -> WebServer:
        import uvicorn

        # Request lines carry ``?token=`` on a first visit: no access log, whatever the config.
        logging.getLogger("uvicorn.access").disabled = True
        sock = _listen(self.host, self.port)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_config=None,
            access_log=False,
            lifespan="off",
            http="h11",
            ws="none",
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._run, args=(sock,), name="pivh-web", daemon=True
        )
        self._thread.start()
        deadline = threading.Event()
        waited = 0.0
        while not self._server.started:
            if not self._thread.is_alive():
                raise ConfigError(f"the web server on {self.url} failed to start: {self._error}")
            if waited >= timeout_s:
                raise ConfigError(f"the web server on {self.url} did not start in {timeout_s} s")
            deadline.wait(0.02)
            waited += 0.02
        log.info("web server on %s", self.url)
        return self

    def _run(self, sock: socket.socket) -> None:
        try:
            self._server.run(sockets=[sock])
        except BaseException as exc:  # reported by start() / stop()
            self._error = exc
        finally:
            sock.close()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Ask uvicorn to exit, end the streams, wait for the thread."""
        stopping = getattr(self.app.state, "stopping", None)
        if stopping is not None:
            stopping.set()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(timeout_s)
        self._thread = None

    def __enter__(self) -> WebServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit it: few frames wait in the kernel for a slow client.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror}; choose another --port "
            "or stop the program that uses it"
        ) from None
    sock.listen(64)
    sock.setblocking(False)
    return sock


def public_url(host: str, port: int) -> str:
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def check_bind(host: str, token: str | None) -> None:
    """Anything but loopback needs a token (a bedside display on the ward network)."""
    if not is_loopback(host) and not token:
        raise ConfigError(f"--host {host} is reachable from other machines and needs a token")


def serve_live(
    hub: FrameHub,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    token: str | None = None,
    *,
    store: Any | None = None,
    max_fps: float = 30.0,
) -> WebServer:
    """Start the live page (and the review pages with ``store``) in this process; started server."""
    from pivh_live.web.app import create_app

    check_bind(host, token)
    app = create_app(hub=hub, store=store, token=None if is_loopback(host) else token,
                     max_fps=max_fps)  # fmt: skip
    return WebServer(app, host, port).start()


def start_live_display(
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    engine: str = "",
    model_version: str = "",
    settings: OverlaySettings | None = None,
    store: Any | None = None,
    max_fps: float = 30.0,
    console: TextIO | None = None,
) -> LiveDisplay:
    """The display consumer of ``pivh-live run``: a hub, its web server (started), the address.

    Off loopback a fresh token is made and printed once with the address on
    ``console`` (stderr). ``close()`` on the returned consumer stops the server.
    """
    token = None if is_loopback(host) else new_token()
    hub = FrameHub(settings=settings, engine=engine, model_version=model_version)
    server = serve_live(hub, host, port, token, store=store, max_fps=max_fps)
    announce(server.url if token is None else server.public_url, token, console)
    return LiveDisplay(hub, server=server)


def announce(url: str, token: str | None, stream: TextIO | None = None) -> None:
    """Print the address once on the console, with the token when there is one.

    Written straight to the terminal, never through logging, so the token
    does not end up in a log file.
    """
    out = stream or sys.stderr
    if token:
        out.write(f"\n  pivh-live web: {url}/?token={token}\n  (the token is shown only once)\n\n")
    else:
        out.write(f"\n  pivh-live web: {url}/\n\n")
    out.flush()
