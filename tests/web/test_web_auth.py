"""Access control: token on non-loopback binds, Host check on loopback, security headers."""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path

import httpx
import pytest
from web_fakes import Sweep

from pivh_live.errors import ConfigError
from pivh_live.web import FrameHub, LiveDisplay
from pivh_live.web.app import create_app
from pivh_live.web.auth import COOKIE, is_loopback, new_token, same_origin, token_matches
from pivh_live.web.server import WebServer, announce, check_bind, serve_live

WEB = Path(__file__).resolve().parents[2] / "pivh_live" / "web"


@pytest.fixture(scope="module")
def token() -> str:
    return new_token()


@pytest.fixture(scope="module")
def guarded(token, recorded):
    """An app configured as for a non-loopback bind (served on 127.0.0.1 for the test)."""
    from pivh_live.recording import SessionStore

    hub = FrameHub()
    app = create_app(hub=hub, store=SessionStore(recorded), token=token)
    with WebServer(app, "127.0.0.1", 0) as server:
        yield server


@pytest.mark.parametrize(
    "path", ["/", "/live/state", "/live/stream.mjpg", "/sessions", "/static/live.js", "/nope"]
)
def test_everything_needs_the_token(guarded, path) -> None:
    r = httpx.get(guarded.url + path)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert r.headers["x-content-type-options"] == "nosniff"


def test_bearer_token(guarded, token) -> None:
    ok = httpx.get(guarded.url + "/live/state", headers={"authorization": f"Bearer {token}"})
    assert ok.status_code == 200 and "banner" in ok.json()
    bad = httpx.get(guarded.url + "/live/state", headers={"authorization": f"Bearer {token}x"})
    assert bad.status_code == 401


def test_token_query_sets_a_strict_cookie_and_leaves_the_address(guarded, token) -> None:
    with httpx.Client(base_url=guarded.url) as client:
        r = client.get(f"/sessions?sort=new&token={token}")
        assert r.status_code == 303 and r.headers["location"] == "/sessions?sort=new"
        cookie = r.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE}={token};")
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
        page = client.get("/sessions")  # the client now sends the cookie
        assert page.status_code == 200 and "Recorded sessions" in page.text
    wrong = httpx.get(guarded.url + "/sessions", cookies={COOKIE: "wrong"})
    assert wrong.status_code == 401
    assert httpx.get(guarded.url + "/?token=wrong").status_code == 401


def test_loopback_server_refuses_other_host_names(clips) -> None:
    hub = FrameHub()
    LiveDisplay(hub).on_result(*Sweep().step(clips[0].frames[0], 0))
    with WebServer(create_app(hub=hub), "127.0.0.1", 0) as server:
        assert httpx.get(server.url + "/").status_code == 200
        for host in ("localhost", f"localhost:{server.port}", "[::1]:8765"):
            assert httpx.get(server.url + "/", headers={"host": host}).status_code == 200
        # DNS rebinding: a page on evil.example whose name now points at 127.0.0.1.
        r = httpx.get(server.url + "/live/state", headers={"host": "evil.example"})
        assert r.status_code == 421


def test_pages_send_security_headers(guarded, token) -> None:
    r = httpx.get(guarded.url + "/", headers={"authorization": f"Bearer {token}"})
    assert r.status_code == 200
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "no-referrer"


def test_shipped_pages_load_nothing_from_elsewhere() -> None:
    files = [*WEB.glob("static/*"), *WEB.glob("templates/*")]
    assert {p.suffix for p in files} >= {".js", ".css", ".html"}
    for path in files:
        text = path.read_text(encoding="utf-8")
        urls = set(re.findall(r"[a-z]+://[^\s\"')]+", text)) - {"http://www.w3.org/2000/svg"}
        assert not urls, f"{path.name} refers to {urls}"
        assert "<script>" not in text and " style=" not in text  # CSP forbids inline code


def test_binding_beyond_loopback_needs_a_token() -> None:
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.5"):
        assert is_loopback(host)
        check_bind(host, None)
    for host in ("0.0.0.0", "192.168.1.20", "::", "ward-display.local"):
        assert not is_loopback(host)
        with pytest.raises(ConfigError, match="needs a token"):
            check_bind(host, None)
    with pytest.raises(ConfigError, match="needs a token"):
        serve_live(FrameHub(), "0.0.0.0", 0, None)


def test_tokens_are_random_and_compared_safely() -> None:
    a, b = new_token(), new_token()
    assert a != b and len(a) >= 40
    assert token_matches(a, a) and not token_matches(a, b)
    assert not token_matches(a, None) and not token_matches(a, "")


def test_same_origin_check() -> None:
    host = {"host": "127.0.0.1:8765"}
    assert same_origin(httpx.Headers({**host, "origin": "http://127.0.0.1:8765"}))
    assert not same_origin(httpx.Headers({**host, "origin": "http://evil.example"}))
    assert same_origin(httpx.Headers({**host, "referer": "http://127.0.0.1:8765/sessions/x"}))
    assert not same_origin(httpx.Headers({**host, "referer": "http://127.0.0.1:87650/"}))
    assert not same_origin(httpx.Headers(host))


def test_the_token_is_shown_once_and_never_logged(guarded, token, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    httpx.get(f"{guarded.url}/sessions?token={token}")
    httpx.get(guarded.url + "/sessions", headers={"authorization": f"Bearer {token}"})
    console = io.StringIO()
    announce("http://ward-pc:8765", token, console)
    assert f"http://ward-pc:8765/?token={token}" in console.getvalue()
    server_side = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    assert not [r for r in server_side if token in r.getMessage()]
