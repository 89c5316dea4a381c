"""Review routes over a real recorded session (Recorder -> SessionStore): pages, JSON, video,
frames by time, keyframes, delete with confirmation, and no way out of the store."""

from __future__ import annotations

import re

import cv2
import httpx
import numpy as np
import pytest
from conftest import SWEEP

from pivh_live.recording import SessionStore
from pivh_live.web.app import create_app
from pivh_live.web.server import WebServer
from pivh_live.web.videoframes import VideoFrames

FPS = 25.0


@pytest.fixture(scope="module")
def served(recorded):
    store = SessionStore(recorded)
    with WebServer(create_app(store=store), "127.0.0.1", 0) as server:
        yield server, store, store.list_sessions()[0].id


def get(served, path: str, **kw) -> httpx.Response:
    return httpx.get(served[0].url + path, timeout=30, **kw)


def test_list_shows_the_session(served) -> None:
    _, _, sid = served
    r = get(served, "/sessions")
    assert r.status_code == 200
    row = re.search(rf'<tr data-session="{sid}">(.*?)</tr>', r.text, re.S).group(1)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
    assert f'href="/sessions/{sid}"' in cells[0]
    assert cells[1] == "5.6 s" and cells[2] == "III" and cells[3] == "1" and cells[4] == "complete"
    assert get(served, "/api/sessions").json()[0]["id"] == sid
    assert get(served, "/", follow_redirects=False).headers["location"] == "/sessions"


def test_session_page_lists_findings_with_keyframes(served) -> None:
    _, store, sid = served
    r = get(served, f"/sessions/{sid}")
    assert r.status_code == 200 and "RESEARCH USE ONLY - NOT FOR DIAGNOSIS" in r.text
    buttons = re.findall(r'data-t="([0-9.]+)" data-seq="(\d+)"><img src="([^"]+)"', r.text)
    findings = store.findings(sid)
    assert {int(s) for _, s, _ in buttons} == {f.seq for f in findings}
    for _, seq, src in buttons:
        assert src == f"/api/sessions/{sid}/keyframes/{seq}.png"
        png = get(served, src)
        assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_timeline_json_matches_the_journal(served) -> None:
    _, store, sid = served
    data = get(served, f"/api/sessions/{sid}/timeline.json").json()
    tl = data["timeline"]
    n = sum(count for _, count in SWEEP)
    assert len(tl["t"]) == n and tl["seq"] == list(range(n))
    assert tl["t"] == pytest.approx([i / FPS for i in range(n)], abs=1e-3)
    journal = list(store.frames(sid))
    assert tl["a"] == [int(r["alert"]) for r in journal]
    assert tl["ps"] == pytest.approx([r["p_pivh_smoothed"] for r in journal], abs=1e-4)
    onset = next(f for f in store.findings(sid) if f.kind == "alert_onset")
    assert len(tl["spans"]) == 1 and tl["spans"][0][0] == pytest.approx(onset.t_s, abs=1e-3)
    texts = {tl["banners"][b][1] for b in tl["b"]}
    assert {"No PIVH detected", "PIVH ALERT - grade III"} <= texts
    assert tl["worst_grade"] == 3 and data["video"]["url"] == f"/api/sessions/{sid}/video"
    assert data["findings"][0]["label"] == "new worst grade, alert onset"


def test_video_supports_range_requests(served) -> None:
    _, _, sid = served
    whole = get(served, f"/api/sessions/{sid}/video")
    assert whole.status_code == 200 and whole.headers["content-type"] == "video/mp4"
    part = get(served, f"/api/sessions/{sid}/video", headers={"range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == whole.content[100:200]


def test_frame_by_time_shows_the_recorded_image(served) -> None:
    _, store, sid = served
    onset = next(k for k in store.keyframes(sid) if k.kind == "alert_onset")
    key = cv2.imread(str(store.keyframe_path(sid, onset.seq)), cv2.IMREAD_GRAYSCALE)

    def frame(t: float) -> np.ndarray:
        r = get(served, f"/api/sessions/{sid}/frame.jpg?t={t}")
        assert r.status_code == 200 and float(r.headers["x-frame-time"]) <= t + 1e-3
        return cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_GRAYSCALE)

    def diff(a: np.ndarray) -> float:
        return float(np.abs(a.astype(int) - key.astype(int)).mean())

    assert diff(frame(onset.t_s)) < 4.0  # H.264 + JPEG of the very frame
    assert diff(frame(0.4)) > 10.0  # a normal frame of the sweep: a different image
    assert diff(frame(onset.t_s)) < 4.0  # back again (seek)


def test_video_frames_decode_forward_and_seek_back(served) -> None:
    _, store, sid = served
    frames = VideoFrames(store.video_path(sid))
    times = [frames.frame_at(i / FPS).t for i in range(20)]
    assert times == pytest.approx([i / FPS for i in range(20)], abs=1e-3)
    assert frames.seeks == 1  # playing forward never seeks
    assert frames.frame_at(0.8 + 0.01).t == pytest.approx(0.8, abs=1e-3)  # between frames
    assert frames.seeks == 1
    assert frames.frame_at(0.2).t == pytest.approx(0.2, abs=1e-3) and frames.seeks == 2
    assert frames.frame_at(4.0).t == pytest.approx(4.0, abs=1e-3) and frames.seeks == 3
    frames.close()


@pytest.mark.parametrize(
    "path",
    [
        "/sessions/..%2F..%2Fetc%2Fpasswd",
        "/sessions/../../etc/passwd",
        "/sessions/20240101-000000-zzzz",
        "/sessions/20240101-000000-abcd",
        "/api/sessions/..%2Findex.sqlite/video",
        "/api/sessions/20240101-000000-abcd/timeline.json",
        "/api/sessions/{sid}/keyframes/999.png",
        "/api/sessions/{sid}/keyframes/..%2F..%2Fsession.json",
        "/api/sessions/{sid}/keyframes/53.png%00.txt",
        "/sessions/{sid}/report.sh",
        "/static/../app.py",
        "/static/%2e%2e/app.py",
        "/static/..%2Fapp.py",
    ],
)
def test_no_path_leaves_the_store(served, path) -> None:
    _, _, sid = served
    r = get(served, path.format(sid=sid))
    assert r.status_code in (400, 404)
    assert b"schema" not in r.content and b"root:" not in r.content


def test_bad_frame_times_are_rejected(served) -> None:
    _, _, sid = served
    for t in ("abc", "-1", "nan", "1e30"):
        assert get(served, f"/api/sessions/{sid}/frame.jpg?t={t}").status_code == 400


def test_delete_needs_confirmation_from_this_origin(store_copy) -> None:
    sid = store_copy.list_sessions()[0].id
    with WebServer(create_app(store=store_copy), "127.0.0.1", 0) as server:
        client = httpx.Client(base_url=server.url, timeout=30)
        form = client.get(f"/sessions/{sid}/delete").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)
        url = f"/sessions/{sid}/delete"
        origin = {"origin": server.url}
        ok = {"csrf": csrf, "confirm": "yes"}
        assert client.post(url, data=ok).status_code == 403  # no Origin or Referer
        assert (
            client.post(url, data=ok, headers={"origin": "http://evil.example"}).status_code == 403
        )
        assert client.post(url, data={**ok, "csrf": "x"}, headers=origin).status_code == 403
        assert client.post(url, data={"csrf": csrf}, headers=origin).status_code == 400
        assert store_copy.get(sid).id == sid  # still there
        done = client.post(url, data=ok, headers=origin, follow_redirects=False)
        assert done.status_code == 303 and done.headers["location"] == "/sessions"
        assert store_copy.list_sessions() == []
        assert not store_copy.session_dir(sid).exists()
        assert client.get(f"/sessions/{sid}").status_code == 404
        client.close()
