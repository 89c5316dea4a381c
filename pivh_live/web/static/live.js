// pivh-live bedside display: MJPEG frames (fetch + multipart parser) and state events.
// Research use only - not for diagnosis.
"use strict";

(function () {
  const STREAM_URL = "/live/stream.mjpg";
  const EVENTS_URL = "/live/events";
  const MAX_BACKOFF_MS = 5000;
  const $ = (id) => document.getElementById(id);
  const canvas = $("frame");
  const ctx = canvas.getContext("2d");

  const view = {
    framesShown: 0,
    lastFrameAt: 0, // performance.now() of the last drawn frame
    imageSeq: null,
    state: null,
    stateAt: 0,
    streamUp: false,
    eventsUp: false,
    authFailed: false, // 401: the server restarted with a new token
    staleAfterMs: 2000,
  };
  window.pivhLive = view; // read by tests and handy in the console

  const backoff = (attempt) => Math.min(MAX_BACKOFF_MS, 250 * Math.pow(2, attempt));
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // --- MJPEG over fetch -----------------------------------------------------------
  const encoder = new TextEncoder();
  const HEADER_END = encoder.encode("\r\n\r\n");

  function indexOf(buf, pattern, from) {
    outer: for (let i = from; i <= buf.length - pattern.length; i++) {
      for (let j = 0; j < pattern.length; j++) {
        if (buf[i + j] !== pattern[j]) continue outer;
      }
      return i;
    }
    return -1;
  }

  // One complete part at the start of buf, or null: {headers, body, rest}.
  function takePart(buf) {
    const end = indexOf(buf, HEADER_END, 0);
    if (end < 0) return null;
    const text = new TextDecoder().decode(buf.subarray(0, end));
    const headers = {};
    for (const line of text.split("\r\n")) {
      const colon = line.indexOf(":");
      if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    const length = parseInt(headers["content-length"] || "", 10);
    if (!(length >= 0)) throw new Error("part without Content-Length");
    const start = end + HEADER_END.length;
    if (buf.length < start + length) return null;
    return { headers, body: buf.slice(start, start + length), rest: buf.subarray(start + length) };
  }

  function concat(a, b) {
    if (a.length === 0) return b;
    const out = new Uint8Array(a.length + b.length);
    out.set(a, 0);
    out.set(b, a.length);
    return out;
  }

  let queued = null;
  let drawing = false;

  function showPart(part) {
    queued = part; // a newer part replaces one not drawn yet: newest first, never a backlog
    if (!drawing) drawLoop();
  }

  async function drawLoop() {
    drawing = true;
    while (queued) {
      const part = queued;
      queued = null;
      try {
        const bitmap = await createImageBitmap(new Blob([part.body], { type: "image/jpeg" }));
        if (canvas.width !== bitmap.width || canvas.height !== bitmap.height) {
          canvas.width = bitmap.width;
          canvas.height = bitmap.height;
        }
        ctx.drawImage(bitmap, 0, 0);
        bitmap.close();
        view.framesShown += 1;
        view.lastFrameAt = performance.now();
        view.imageSeq = parseInt(part.headers["x-seq"] || "-1", 10);
        $("frames").textContent = String(view.framesShown);
        $("seq").textContent = String(view.imageSeq);
      } catch (err) {
        // A damaged frame is skipped; the next one replaces it.
      }
    }
    drawing = false;
  }

  async function readStream(response) {
    const reader = response.body.getReader();
    let buf = new Uint8Array(0);
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf = concat(buf, value);
      let newest = null;
      for (;;) {
        const part = takePart(buf);
        if (!part) break;
        newest = part;
        buf = part.rest;
      }
      if (newest) showPart(newest);
    }
  }

  async function streamLoop() {
    let attempt = 0;
    for (;;) {
      try {
        const response = await fetch(STREAM_URL, { cache: "no-store", credentials: "same-origin" });
        view.authFailed = response.status === 401;
        if (!response.ok) throw new Error("HTTP " + response.status);
        view.streamUp = true;
        attempt = 0;
        render();
        await readStream(response);
      } catch (err) {
        // fall through to the retry below
      }
      view.streamUp = false;
      render();
      await sleep(backoff(attempt++));
    }
  }

  // --- state events ---------------------------------------------------------------
  function eventsLoop(attempt) {
    const source = new EventSource(EVENTS_URL);
    source.onopen = () => {
      attempt = 0;
    };
    source.onmessage = (event) => {
      view.state = JSON.parse(event.data);
      view.stateAt = performance.now();
      view.staleAfterMs = view.state.stale_after_ms || 2000;
      view.eventsUp = true;
      render();
    };
    source.onerror = () => {
      source.close(); // our own back-off instead of the browser's fixed retry
      view.eventsUp = false;
      render();
      setTimeout(() => eventsLoop(attempt + 1), backoff(attempt));
    };
  }

  // --- rendering ------------------------------------------------------------------
  function setBanner(key, text, grade) {
    const el = $("banner");
    el.className = "banner banner-" + key;
    $("banner-text").textContent = text;
    $("grade").textContent = grade ? "Grade " + grade : "";
  }

  function fmt(value, suffix, digits) {
    return value === null || value === undefined ? "-" : value.toFixed(digits) + suffix;
  }

  function render() {
    const now = performance.now();
    const s = view.state;
    const connected = view.eventsUp && now - view.stateAt < 3000;
    const frameAge = view.lastFrameAt ? now - view.lastFrameAt : Infinity;
    const serverStale = s !== null && s.stale;
    const stale = connected && view.framesShown > 0 && (frameAge > view.staleAfterMs || serverStale);
    const conn = $("conn");
    if (!connected) {
      conn.className = "conn conn-down";
      conn.textContent = view.authFailed
        ? "NO ACCESS: open the address printed on the analyser's console"
        : "RECONNECTING to the analyser...";
      setBanner("reconnecting", view.authFailed ? "NO ACCESS" : "RECONNECTING", null);
      $("state").textContent = view.authFailed ? "access token refused" : "reconnecting";
    } else {
      conn.className = view.streamUp ? "conn conn-up" : "conn conn-wait";
      conn.textContent = view.streamUp ? "live" : "image stream reconnecting...";
      if (stale) {
        const seconds = Math.max(frameAge, s.frame_age_ms || 0) / 1000;
        setBanner("stale", "NO NEW IMAGE (" + seconds.toFixed(0) + " s)", null);
      } else {
        setBanner(s.banner.key, s.banner.text, s.grade);
      }
      $("state").textContent = stale ? "stale image - " + s.state : s.state;
      $("p-pivh").textContent = fmt(s.p_pivh, "", 2);
      $("worst").textContent = s.worst_grade === null ? "-" : s.worst_grade;
      $("fps").textContent = fmt(s.fps, " fps", 1);
      $("latency").textContent = fmt(s.latency_ms, " ms", 0);
      $("model").textContent = (s.engine || "-") + " | " + (s.model_version || "-");
    }
    // A recording problem (disk full) is shown beside the live result, never instead of it.
    const notice = connected && s !== null && s.notice ? s.notice : "";
    $("notice").classList.toggle("hidden", !notice);
    $("notice").textContent = notice;
    const showStale = !connected || stale;
    $("stale").classList.toggle("hidden", !showStale);
    $("stage").classList.toggle("stage-stale", showStale);
    if (showStale) {
      $("stale-text").textContent = connected
        ? "NO NEW IMAGE FOR " + (frameAge / 1000).toFixed(0) + " s"
        : "NOT CONNECTED - image not current";
      // What the display said last, so an alert is not hidden by the outage notice.
      $("stale-last").textContent = s ? "last result: " + s.banner.text : "";
    }
  }

  setInterval(render, 250); // staleness is judged here, even when nothing arrives
  eventsLoop(0);
  streamLoop();
})();
