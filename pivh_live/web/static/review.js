// pivh-live session review: player (<video> or server-decoded frames), HTML overlay from the
// journal, timeline (inline SVG), findings that seek the player. Research use only.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";
  const root = $("player");
  const sid = root.dataset.session;
  const video = $("video");
  const still = $("still");
  const st = { data: null, tl: null, mode: "none", t: 0, playing: false, fps: 25, duration: 0 };
  const frameReq = { busy: false, want: null };
  const api = { ready: false, time: () => now(), seq: () => seqAt(now()), mode: () => st.mode };
  api.seek = (t) => seek(t);
  window.pivhPlayer = api; // read by tests and handy in the console

  fetch("/api/sessions/" + encodeURIComponent(sid) + "/timeline.json", { cache: "no-store" })
    .then((r) => (r.ok ? r.json() : Promise.reject(new Error("HTTP " + r.status))))
    .then(init)
    .catch((err) => {
      $("mode").textContent = "cannot load the session: " + err.message;
    });

  function init(data) {
    st.data = data;
    st.tl = data.timeline;
    st.fps = data.fps || estimateFps(st.tl.t) || 25;
    st.duration = Math.max(st.tl.duration || 0, 0);
    const forceFrames = new URLSearchParams(location.search).get("player") === "frames";
    const mime = data.video.mime;
    if (data.video.url && !forceFrames && video.canPlayType(mime) !== "") useVideo();
    else useFrames();
    wireControls();
    drawTimeline();
    window.addEventListener("resize", debounce(drawTimeline, 200));
    update();
    api.ready = true;
  }

  function estimateFps(t) {
    if (!t || t.length < 3) return null;
    const dt = (t[t.length - 1] - t[0]) / (t.length - 1);
    return dt > 0 ? 1 / dt : null;
  }

  // --- player backends ------------------------------------------------------------
  function useVideo() {
    st.mode = "video";
    $("mode").textContent = "video";
    video.src = st.data.video.url;
    video.addEventListener("error", () => useFrames(), { once: true });
    for (const ev of ["timeupdate", "seeked", "pause", "play", "loadedmetadata"]) {
      video.addEventListener(ev, update);
    }
    video.addEventListener("loadedmetadata", () => {
      if (isFinite(video.duration)) st.duration = Math.max(st.duration, video.duration);
      drawTimeline();
    });
    video.addEventListener("ended", () => setPlaying(false));
    if (video.requestVideoFrameCallback) {
      const onFrame = () => {
        update();
        video.requestVideoFrameCallback(onFrame);
      };
      video.requestVideoFrameCallback(onFrame);
    }
  }

  function useFrames() {
    const t = now();
    st.mode = st.data.video.url ? "frames" : "none";
    video.pause();
    video.removeAttribute("src");
    video.classList.add("hidden");
    still.classList.remove("hidden");
    $("mode").textContent = st.mode === "frames" ? "frames decoded by the server" : "no video recorded";
    st.t = t;
    requestStill();
    update();
  }

  function requestStill() {
    if (st.mode !== "frames") return;
    frameReq.want = st.t;
    if (frameReq.busy) return;
    frameReq.busy = true;
    const t = frameReq.want;
    frameReq.want = null;
    const done = () => {
      frameReq.busy = false;
      if (frameReq.want !== null) requestStill();
    };
    still.onload = done;
    still.onerror = done;
    still.src = st.data.video.frame_url + "?t=" + t.toFixed(4);
  }

  function now() {
    return st.mode === "video" ? video.currentTime : st.t;
  }

  function seek(t) {
    t = Math.min(Math.max(0, t), st.duration || 0);
    if (st.mode === "video") video.currentTime = t;
    st.t = t;
    requestStill();
    update();
  }

  function setPlaying(on) {
    st.playing = on;
    $("play").textContent = on ? "Pause" : "Play";
    if (st.mode === "video") {
      if (on) video.play().catch(() => setPlaying(false));
      else video.pause();
    } else if (on) {
      framesTick(performance.now());
    }
  }

  function framesTick(last) {
    if (!st.playing || st.mode === "video") return;
    const t0 = performance.now();
    st.t += Math.max(0, (t0 - last) / 1000);
    if (st.t >= st.duration) {
      st.t = st.duration;
      setPlaying(false);
    }
    requestStill();
    update();
    if (st.playing) setTimeout(() => framesTick(t0), 1000 / st.fps);
  }

  function wireControls() {
    $("play").addEventListener("click", () => setPlaying(!st.playing));
    $("seek").addEventListener("input", (e) => seek((e.target.value / 1000) * st.duration));
    $("overlay").addEventListener("change", (e) => $("ov").classList.toggle("hidden", !e.target.checked));
    for (const b of document.querySelectorAll(".finding")) {
      b.addEventListener("click", () => {
        setPlaying(false);
        seek(parseFloat(b.dataset.t));
        root.scrollIntoView({ block: "nearest" });
      });
    }
  }

  // --- overlay from the journal -----------------------------------------------------
  function indexAt(t) {
    const ts = st.tl.t;
    let lo = 0;
    let hi = ts.length - 1;
    if (hi < 0 || t < ts[0] - 1e-4) return -1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (ts[mid] <= t + 1e-4) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  function seqAt(t) {
    const i = st.tl ? indexAt(t) : -1;
    return i < 0 ? null : st.tl.seq[i];
  }

  function update() {
    if (!st.tl) return;
    const t = now();
    const i = indexAt(t);
    $("clock").textContent = t.toFixed(2) + " s";
    $("frame-no").textContent = i < 0 ? "frame -" : "frame " + st.tl.seq[i];
    if (st.duration > 0 && document.activeElement !== $("seek")) {
      $("seek").value = String(Math.round((t / st.duration) * 1000));
    }
    const [key, text, grade] = i < 0 ? ["starting", "-", ""] : st.tl.banners[st.tl.b[i]];
    $("ov-banner").className = "ov-banner ov-" + key;
    $("ov-text").textContent = text;
    $("ov-grade").textContent = grade ? "Grade " + grade : "";
    const p = i < 0 ? 0 : st.tl.ps[i];
    const fill = $("ov-bar-fill");
    fill.style.width = (100 * Math.min(1, Math.max(0, p))).toFixed(1) + "%";
    fill.classList.toggle("on", i >= 0 && st.tl.a[i] === 1);
    $("ov-p").textContent = i < 0 ? "-" : p.toFixed(2);
    const cursor = document.getElementById("tl-cursor");
    if (cursor && st.layout) {
      const x = st.layout.x(t).toFixed(1);
      cursor.setAttribute("x1", x);
      cursor.setAttribute("x2", x);
    }
  }

  // --- timeline ---------------------------------------------------------------------
  function el(name, attrs, parent) {
    const node = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    if (parent) parent.appendChild(node);
    return node;
  }

  // Per pixel column keep the first, min, max and last point: the shape survives decimation.
  function decimate(xs, ys, width) {
    if (xs.length <= 2 * width) return xs.map((x, i) => [x, ys[i]]);
    const out = [];
    let col = -1;
    let bucket = [];
    const flush = () => {
      if (!bucket.length) return;
      let lo = bucket[0];
      let hi = bucket[0];
      for (const p of bucket) {
        if (p[1] < lo[1]) lo = p;
        if (p[1] > hi[1]) hi = p;
      }
      const keep = [bucket[0], lo, hi, bucket[bucket.length - 1]];
      keep.sort((a, b) => a[0] - b[0]);
      for (const p of keep) out.push(p);
    };
    xs.forEach((x, i) => {
      const c = Math.floor(x);
      if (c !== col) {
        flush();
        bucket = [];
        col = c;
      }
      bucket.push([x, ys[i]]);
    });
    flush();
    return out;
  }

  function drawTimeline() {
    const box = $("timeline");
    if (!st.tl) return;
    const W = Math.max(300, box.clientWidth || 800);
    const H = Math.max(120, box.clientHeight || 190);
    const key = W + "x" + H + "/" + st.duration;
    if (key === st.drawn) return; // same size and length: keep the element (and its listeners)
    st.drawn = key;
    const m = { l: 42, r: 42, t: 12, b: 26 };
    const pw = W - m.l - m.r;
    const ph = H - m.t - m.b;
    const dur = st.duration > 0 ? st.duration : 1;
    const x = (t) => m.l + (Math.min(Math.max(t, 0), dur) / dur) * pw;
    const yp = (p) => m.t + (1 - p) * ph;
    const yg = (g) => m.t + (1 - g / 4) * ph;
    st.layout = { x, W };
    box.textContent = "";
    const svg = el("svg", { viewBox: "0 0 " + W + " " + H, id: "timeline-svg", role: "img" }, box);
    for (const [a, b] of st.tl.spans) {
      el("rect", { x: x(a), y: m.t, width: Math.max(1, x(b) - x(a)), height: ph, fill: "#f6b3b3", class: "alert-span" }, svg);
    }
    for (const p of [0, 0.5, 1]) {
      el("line", { x1: m.l, x2: m.l + pw, y1: yp(p), y2: yp(p), stroke: "#ddd" }, svg);
      el("text", { x: m.l - 6, y: yp(p) + 4, "text-anchor": "end", "font-size": 11, fill: "#333" }, svg).textContent = p.toFixed(1);
    }
    const names = ["0", "I", "II", "III", "IV"];
    names.forEach((n, g) => {
      el("text", { x: m.l + pw + 6, y: yg(g) + 4, "font-size": 11, fill: "#7b1fa2" }, svg).textContent = n;
    });
    el("text", { x: 4, y: m.t + 10, "font-size": 11, fill: "#0b57d0" }, svg).textContent = "P";
    const xs = st.tl.t.map(x);
    const line = (pts, attrs) =>
      el("polyline", Object.assign({ fill: "none", points: pts.map((p) => p[0].toFixed(1) + "," + p[1].toFixed(1)).join(" ") }, attrs), svg);
    line(decimate(xs, st.tl.p.map(yp), pw), { stroke: "#8fa3b3", "stroke-width": 1, class: "p-raw" });
    line(decimate(xs, st.tl.ps.map(yp), pw), { stroke: "#0b57d0", "stroke-width": 2.5, class: "p-smooth" });
    const steps = [];
    st.tl.g.forEach((g, i) => {
      if (i > 0) steps.push([xs[i], yg(st.tl.g[i - 1])]);
      steps.push([xs[i], yg(g)]);
    });
    line(decimate(steps.map((p) => p[0]), steps.map((p) => p[1]), pw), {
      stroke: "#7b1fa2", "stroke-width": 2, "stroke-dasharray": "5 3", class: "grade",
    });
    for (const f of st.data.findings) {
      const fx = x(f.t_s);
      el("path", { d: "M" + (fx - 6) + " " + (m.t - 2) + " L" + (fx + 6) + " " + (m.t - 2) + " L" + fx + " " + (m.t + 9) + " Z", fill: "#c80000", class: "finding-mark" }, svg);
    }
    const step = niceStep(dur / 8);
    for (let t = 0; t <= dur + 1e-9; t += step) {
      el("line", { x1: x(t), x2: x(t), y1: m.t + ph, y2: m.t + ph + 4, stroke: "#333" }, svg);
      el("text", { x: x(t), y: H - 8, "text-anchor": "middle", "font-size": 11, fill: "#333" }, svg).textContent = t.toFixed(step < 1 ? 1 : 0) + " s";
    }
    el("rect", { x: m.l, y: m.t, width: pw, height: ph, fill: "none", stroke: "#999" }, svg);
    el("line", { id: "tl-cursor", x1: x(now()), x2: x(now()), y1: m.t, y2: m.t + ph, stroke: "#000", "stroke-width": 2 }, svg);
    svg.addEventListener("click", (e) => {
      const r = svg.getBoundingClientRect();
      const px = ((e.clientX - r.left) / r.width) * W;
      seek(((px - m.l) / pw) * dur);
    });
    update();
  }

  function niceStep(raw) {
    const p = Math.pow(10, Math.floor(Math.log10(Math.max(raw, 1e-3))));
    for (const k of [1, 2, 5, 10]) if (k * p >= raw) return k * p;
    return 10 * p;
  }

  function debounce(fn, ms) {
    let timer = null;
    return () => {
      clearTimeout(timer);
      timer = setTimeout(fn, ms);
    };
  }
})();
