"""HTML pages from the package's templates (``string.Template``; every value escaped by the caller).

Pages load only ``/static/*.css`` and ``/static/*.js`` from this server: no
inline script or style, so the Content-Security-Policy can forbid both.
"""

from __future__ import annotations

import html
from functools import cache
from pathlib import Path
from string import Template

from starlette.responses import HTMLResponse

from pivh_live import DISCLAIMER

TEMPLATES = Path(__file__).resolve().parent / "templates"
STATIC = Path(__file__).resolve().parent / "static"


@cache
def template(name: str) -> Template:
    return Template((TEMPLATES / name).read_text(encoding="utf-8"))


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def page(
    title: str,
    content: str,
    *,
    css: tuple[str, ...] = (),
    js: tuple[str, ...] = (),
    body_class: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    """A full page around ``content`` (already HTML), with the disclaimer on top."""
    head = [f'<link rel="stylesheet" href="/static/{esc(c)}">' for c in css]
    head += [f'<script src="/static/{esc(j)}" defer></script>' for j in js]
    text = template("base.html").substitute(
        title=esc(title),
        head="\n".join(head),
        body_class=esc(body_class),
        disclaimer=esc(DISCLAIMER),
        content=content,
    )
    return HTMLResponse(text, status_code=status_code)


def fill(name: str, **values: str) -> str:
    """A content template with ``values`` (already escaped HTML) and the disclaimer."""
    return template(name).substitute(disclaimer=esc(DISCLAIMER), **values)


def message_page(title: str, text: str, status_code: int) -> HTMLResponse:
    content = (
        f'<div class="wrap"><h1>{esc(title)}</h1><p>{esc(text)}</p>'
        '<p><a href="/sessions">Recorded sessions</a></p></div>'
    )
    return page(title, content, status_code=status_code)
