"""Access control and security headers for the web app (pure ASGI middleware).

Bound to a loopback address the app needs no token, but it answers only
requests whose ``Host`` is a loopback name: a web page elsewhere that
rebinds its own domain to 127.0.0.1 (DNS rebinding) gets 421, not the
session list. Bound to any other address it needs a token: a random
``secrets.token_urlsafe`` shown once on the console, accepted as
``Authorization: Bearer``, as the ``pivh_token`` cookie, or as ``?token=`` on
a first visit, which sets the cookie (HttpOnly, SameSite=Strict) and
redirects to the same address without the token so it does not stay in the
address bar. Tokens are compared with `hmac.compare_digest`.

Every response carries a Content-Security-Policy that allows nothing but
this origin, ``X-Content-Type-Options: nosniff``, no referrer and no
framing.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from collections.abc import Iterable
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, quote, urlencode

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

COOKIE = "pivh_token"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
CSP = (
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
# A downloaded report is one self-contained file: inline CSS and data: images, no script.
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'"
SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
)


def new_token() -> str:
    """A fresh random access token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    name = host.strip().lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


def token_matches(expected: str, given: str | None) -> bool:
    """Constant-time comparison; a missing token never matches."""
    if not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def request_host(headers: Headers) -> str:
    """The host name of a ``Host`` header without its port ("" when absent)."""
    host = headers.get("host", "").strip().lower()
    if host.startswith("["):  # [::1]:8765
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def same_origin(headers: Headers, scheme: str = "http") -> bool:
    """True when ``Origin`` (or, without it, ``Referer``) names this very host and port.

    Browsers send ``Origin`` with every POST; a form posted from another site
    therefore fails this check (CSRF), as does a request without either header.
    """
    host = headers.get("host", "")
    if not host:
        return False
    expected = f"{scheme}://{host}".lower()
    origin = headers.get("origin")
    if origin is not None:
        return origin.lower() == expected
    referer = headers.get("referer", "").lower()
    return referer == expected or referer.startswith(expected + "/")


class SecurityMiddleware:
    """Host check (loopback), token check (other binds) and security headers.

    ``token`` None means the app is bound to loopback only; ``allowed_hosts``
    then lists the accepted ``Host`` names (default: the loopback names).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str | None,
        allowed_hosts: Iterable[str] | None = None,
    ) -> None:
        self.app = app
        self.token = token
        self.allowed_hosts = frozenset(h.lower() for h in (allowed_hosts or LOOPBACK_NAMES))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if self.token is None and request_host(headers) not in self.allowed_hosts:
            await _plain(send, 421, "this server answers only on localhost")
            return
        if self.token is not None:
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            if token_matches(self.token, query.get("token")):
                await _redirect_with_cookie(scope, send, query, self.token)
                return
            if not self._authorised(headers):
                await _plain(
                    send,
                    401,
                    "access token required: open the address printed on the server's console",
                    extra=[(b"www-authenticate", b"Bearer")],
                )
                return
        await self.app(scope, receive, _with_security_headers(send))

    def _authorised(self, headers: Headers) -> bool:
        assert self.token is not None
        auth = headers.get("authorization", "")
        if auth[:7].lower() == "bearer " and token_matches(self.token, auth[7:].strip()):
            return True
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:  # a malformed cookie header is simply not a token
            return False
        morsel = cookie.get(COOKIE)
        return morsel is not None and token_matches(self.token, morsel.value)


def _with_security_headers(send: Send) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = MutableHeaders(scope=message)
            for name, value in SECURITY_HEADERS:
                headers[name] = value
            if "content-security-policy" not in headers:
                headers["content-security-policy"] = CSP
            headers.setdefault("cache-control", "no-store")
        await send(message)

    return wrapped


async def _plain(
    send: Send, status: int, text: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = (text + "\n").encode()
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        *((n.encode(), v.encode()) for n, v in SECURITY_HEADERS),
        (b"content-security-policy", CSP.encode()),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _redirect_with_cookie(
    scope: Scope, send: Send, query: dict[str, str], token: str
) -> None:
    rest = {k: v for k, v in query.items() if k != "token"}
    path = scope.get("path", "/") or "/"
    # Only our own path: never redirect to an address taken from the request.
    location = (
        quote(path, safe="/-._~") if path.startswith("/") and not path.startswith("//") else "/"
    )
    if rest:
        location += "?" + urlencode(rest)
    cookie = f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
    headers = [
        (b"location", location.encode("latin-1", "replace")),
        (b"set-cookie", cookie.encode()),
        (b"content-length", b"0"),
        (b"cache-control", b"no-store"),
        *((n.encode(), v.encode()) for n, v in SECURITY_HEADERS),
        (b"content-security-policy", CSP.encode()),
    ]
    await send({"type": "http.response.start", "status": 303, "headers": headers})
    await send({"type": "http.response.body", "body": b""})
