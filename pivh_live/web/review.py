"""Review pages and their JSON: session list, session page (player, timeline, findings),
report export, delete with confirmation.

Every session id from a URL is checked against `SESSION_ID_RE` here before
the store sees it (the store checks again); keyframes are addressed by
integer frame number, never by file name, so no request names a path. The
handlers are plain functions: Starlette runs them in worker threads, so
SQLite, file and decoding work never blocks the event loop that streams the
live page.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hmac
import logging
import re
import secrets
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from pivh_live.frames import GRADE_NAMES
from pivh_live.web.auth import same_origin
from pivh_live.web.pages import esc, fill, message_page, page
from pivh_live.web.timeline import CardFinder, build_timeline, group_findings
from pivh_live.web.videoframes import VideoFramesCache

log = logging.getLogger(__name__)

SESSION_ID_RE = re.compile(r"\A[0-9]{8}-[0-9]{6}-[0-9a-f]{4}\Z")


def check_id(session_id: str) -> str:
    if not SESSION_ID_RE.match(session_id):
        raise HTTPException(404, "no such session")
    return session_id


def local_time(iso: str | None) -> str:
    """An ISO 8601 UTC stamp in this machine's local time, for people at the bedside."""
    if not iso:
        return "-"
    try:
        t = dt.datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso
    return t.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = round(float(seconds))
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{float(seconds):.1f} s"


class Review:
    """The review routes over one store; ``cards`` finds a session's model card."""

    def __init__(self, store: Any, cards: Callable[[Mapping[str, Any]], Any] | None = None) -> None:
        self.store = store
        self.cards = cards or CardFinder()
        self.frames = VideoFramesCache()
        self.csrf = secrets.token_urlsafe(24)  # per server start; embedded in the delete form

    # --- store access with HTTP errors -------------------------------------------------

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        from pivh_live.recording import SessionBusyError, SessionError, UnknownSessionError
        from pivh_live.recording.store import InvalidSessionIdError

        try:
            return fn(*args)
        except (UnknownSessionError, InvalidSessionIdError):
            raise HTTPException(404, "no such session") from None
        except SessionBusyError as exc:
            raise HTTPException(409, str(exc)) from None
        except (SessionError, OSError) as exc:
            log.warning("session store: %s", exc)
            raise HTTPException(500, "the session cannot be read") from None

    def info(self, sid: str) -> Any:
        return self._call(self.store.get, check_id(sid))

    def findings(self, sid: str) -> list[dict[str, Any]]:
        """The session's findings per frame, each with its keyframe's URL when one was saved."""
        keyed = {k.seq for k in self._call(self.store.keyframes, sid)}
        return [
            {
                "seq": g.seq,
                "t_s": g.t_s,
                "grade": GRADE_NAMES[max(0, min(4, g.grade))],
                "p": g.p,
                "kinds": list(g.kinds),
                "label": g.label,
                "thumb": f"/api/sessions/{sid}/keyframes/{g.seq}.png" if g.seq in keyed else None,
            }
            for g in group_findings(self._call(self.store.findings, sid))
        ]

    def session_json(self, sid: str) -> dict[str, Any]:
        info = self.info(sid)
        meta = self._call(self.store.meta, sid)
        records = self._call(lambda: list(self.store.frames(sid)))
        timeline = build_timeline(records, meta.get("t0_capture_ns"))
        findings = self.findings(sid)
        video = meta.get("video") or {}
        return {
            "id": sid,
            "status": info.status,
            "fps": meta.get("fps"),
            "video": {
                "url": f"/api/sessions/{sid}/video" if info.frames else None,
                "mime": "video/mp4",
                "frame_url": f"/api/sessions/{sid}/frame.jpg",
                "width": video.get("width"),
                "height": video.get("height"),
            },
            "timeline": timeline.to_json(),
            "findings": findings,
        }

    # --- pages -----------------------------------------------------------------------------

    def list_page(self, request: Request) -> Response:
        sessions = self._call(self.store.list_sessions)
        rows = []
        for s in sessions:
            grade = GRADE_NAMES[max(0, min(4, s.worst_grade))]
            cls = ' class="num grade-hi"' if s.worst_grade >= 1 else ' class="num"'
            rows.append(
                f'<tr data-session="{esc(s.id)}"><td><a href="/sessions/{esc(s.id)}">'
                f"{esc(local_time(s.started))}</a></td>"
                f'<td class="num">{esc(duration_text(s.duration_s))}</td>'
                f'<td{cls}>{esc(grade)}</td><td class="num">{s.alerts}</td>'
                f"<td>{esc(s.status)}</td><td>{esc(s.model)}</td></tr>"
            )
        body = "\n".join(rows) or '<tr><td colspan="6">No recorded sessions.</td></tr>'
        return page("Sessions", fill("sessions.html", rows=body), css=("review.css",))

    def session_page(self, request: Request) -> Response:
        sid = check_id(request.path_params["sid"])
        info = self.info(sid)
        findings = self.findings(sid)
        items = []
        for f in findings:
            thumb = f'<img src="{esc(f["thumb"])}" alt="keyframe">' if f["thumb"] else ""
            label = f["label"]
            items.append(
                f'<li><button type="button" class="finding" data-t="{f["t_s"]:.4f}" '
                f'data-seq="{f["seq"]}">{thumb}<span>{f["t_s"]:.2f} s - {esc(label)} - '
                f"grade {esc(f['grade'])} (p {f['p']:.2f})</span></button></li>"
            )
        facts = [
            ("Started", local_time(info.started)),
            ("Ended", local_time(info.ended)),
            ("Duration", duration_text(info.duration_s)),
            ("Worst grade", GRADE_NAMES[max(0, min(4, info.worst_grade))]),
            ("Alert onsets", str(info.alerts)),
            ("Frames", str(info.frames)),
            ("Status", info.status),
            ("Model", info.model or "-"),
            ("Engine", info.engine or "-"),
            ("Source", info.source_kind or "-"),
        ]
        content = fill(
            "session.html",
            sid=esc(sid),
            started=esc(local_time(info.started)),
            facts="".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in facts),
            findings="\n".join(items) or "<li>No findings (no alert in this session).</li>",
        )
        return page(f"Session {sid}", content, css=("review.css",), js=("review.js",))

    def delete_page(self, request: Request) -> Response:
        sid = check_id(request.path_params["sid"])
        info = self.info(sid)
        content = fill(
            "delete.html",
            sid=esc(sid),
            started=esc(local_time(info.started)),
            csrf=esc(self.csrf),
        )
        return page("Delete session", content, css=("review.css",))

    async def delete(self, request: Request) -> Response:
        sid = check_id(request.path_params["sid"])
        if not same_origin(request.headers, request.url.scheme):
            raise HTTPException(403, "cross-site request refused")
        form = await _urlencoded(request)
        if not hmac.compare_digest(form.get("csrf", ""), self.csrf):
            raise HTTPException(403, "the form has expired; reload the page and try again")
        if form.get("confirm") != "yes":
            raise HTTPException(400, "deleting needs the confirmation box ticked")
        from starlette.concurrency import run_in_threadpool

        await run_in_threadpool(self._delete, sid)
        return RedirectResponse("/sessions", status_code=303)

    def _delete(self, sid: str) -> None:
        from pivh_live.recording import SessionError

        with contextlib.suppress(SessionError):  # no video, or no session: delete says which
            self.frames.drop(self.store.video_path(sid))  # close our decoder on its file first
        self._call(self.store.delete, sid)

    # --- data ---------------------------------------------------------------------------

    def timeline_api(self, request: Request) -> Response:
        return JSONResponse(self.session_json(request.path_params["sid"]))

    def list_api(self, request: Request) -> Response:
        sessions = self._call(self.store.list_sessions)
        return JSONResponse([dataclasses.asdict(s) for s in sessions])

    def video(self, request: Request) -> Response:
        sid = check_id(request.path_params["sid"])
        path, mime = self._call(self.store.browser_video, sid)
        return FileResponse(path, media_type=mime)

    def frame(self, request: Request) -> Response:
        import cv2

        from pivh_live.errors import MediaError

        sid = check_id(request.path_params["sid"])
        try:
            t = float(request.query_params.get("t", "0"))
        except ValueError:
            raise HTTPException(400, "t must be a number of seconds") from None
        if not 0.0 <= t < 1e7:
            raise HTTPException(400, "t out of range")
        path = self._call(self.store.video_path, sid)
        try:
            frame = self.frames.get(path).frame_at(t)
        except MediaError as exc:
            raise HTTPException(500, str(exc)) from None
        ok, buf = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, 85])
        if not ok:
            raise HTTPException(500, "cannot encode the frame")
        return Response(buf.tobytes(), media_type="image/jpeg",
                        headers={"x-frame-time": f"{frame.t:.4f}"})  # fmt: skip

    def keyframe(self, request: Request) -> Response:
        sid = check_id(request.path_params["sid"])
        seq = int(request.path_params["seq"])
        path = self._call(self.store.keyframe_path, sid, seq)
        if path.suffix.lower() != ".png" or not path.is_file():
            raise HTTPException(404, "no such keyframe")
        return FileResponse(path, media_type="image/png")

    def report(self, request: Request) -> Response:
        from pivh_live.web.auth import REPORT_CSP
        from pivh_live.web.report import collect_report, report_html
        from pivh_live.web.report_pdf import report_pdf

        sid = check_id(request.path_params["sid"])
        kind = request.path_params["kind"]
        data = self._call(collect_report, self.store, sid, self.cards)
        name = f"pivh-live-session-{sid}.{kind}"
        disposition = {"content-disposition": f'attachment; filename="{name}"'}
        if kind == "html":
            headers = {**disposition, "content-security-policy": REPORT_CSP}
            return Response(report_html(data), media_type="text/html; charset=utf-8",
                            headers=headers)  # fmt: skip
        return Response(report_pdf(data), media_type="application/pdf", headers=disposition)


async def _urlencoded(request: Request) -> dict[str, str]:
    """A small url-encoded form body (no python-multipart needed for one checkbox)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise HTTPException(415, "send the form as application/x-www-form-urlencoded")
    body = await request.body()  # the app caps bodies at 64 KiB
    pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v for k, v in pairs}


def review_routes(
    store: Any, cards: Callable[[Mapping[str, Any]], Any] | None = None
) -> list[BaseRoute]:
    r = Review(store, cards)
    sid = "{sid:str}"
    return [
        Route("/sessions", r.list_page),
        Route(f"/sessions/{sid}", r.session_page),
        Route(f"/sessions/{sid}/delete", r.delete_page, methods=["GET"]),
        Route(f"/sessions/{sid}/delete", r.delete, methods=["POST"]),
        Route(f"/sessions/{sid}/report.{{kind:str}}", _only_kinds(r.report)),
        Route("/api/sessions", r.list_api),
        Route(f"/api/sessions/{sid}/timeline.json", r.timeline_api),
        Route(f"/api/sessions/{sid}/video", r.video),
        Route(f"/api/sessions/{sid}/frame.jpg", r.frame),
        Route(f"/api/sessions/{sid}/keyframes/{{seq:int}}.png", r.keyframe),
    ]


def _only_kinds(handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
    def wrapped(request: Request) -> Response:
        if request.path_params["kind"] not in ("html", "pdf"):
            return message_page("Not found", "reports are .html or .pdf", 404)
        return handler(request)

    return wrapped
