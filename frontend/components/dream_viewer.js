// Dream viewer: every frame of a dream (and its branches) is in the page once; switching frames, playing and the
// keys (←/→ step, space play/pause, Home/End) run here with no request to any server. The page hears back only on
// an explicit action (fork, edit a latent cell, futures, attention), as a trigger value {kind, track, step, ...}.
//
// data: {version, tracks: [{id, label, frames, real, errors, actions, rewards, discounts, dones, restarted,
//        latents, confidence}], meanings, latent_shape: [C, K], step, track, compare, fps}
// Frames are base64 PNGs (64×64 grayscale). Timing of each switch goes to window.__dreamViewer (tests read it).
//
// Key-token frames: an attention heatmap of this dream elsewhere on the page (plotly) names the step and modality of
// each of its columns in layout.meta.dream_tokens = {track, steps, modalities}; hovering a z token there shows that
// step's frame (of that branch) beside the pointer, drawn from the frames decoded here, with no request.

const SIZE = 192;
const METRICS = [["pixel", "pixel MAE"], ["latent_ce", "latent CE"], ["reward", "|r̂ − r|"], ["discount", "|γ̂ − γ|"]];
const COLORS = {pixel: "#1f77b4", latent_ce: "#9467bd", reward: "#2ca02c", discount: "#d62728"};

function bitmap(b64) {
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return createImageBitmap(new Blob([bytes], {type: "image/png"}));
}

async function diffBitmap(a, b) {
  const canvas = new OffscreenCanvas(a.width, a.height);
  const ctx = canvas.getContext("2d");
  ctx.drawImage(a, 0, 0);
  const pa = ctx.getImageData(0, 0, a.width, a.height);
  ctx.drawImage(b, 0, 0);
  const pb = ctx.getImageData(0, 0, a.width, a.height);
  const out = ctx.createImageData(a.width, a.height);
  for (let i = 0; i < pa.data.length; i += 4) {
    const d = Math.abs(pa.data[i] - pb.data[i]);
    out.data[i] = d; out.data[i + 1] = Math.round(d * 0.35); out.data[i + 2] = Math.round(d * 0.35);
    out.data[i + 3] = 255;
  }
  return createImageBitmap(out);
}

async function decodeTrack(track) {
  const frames = await Promise.all(track.frames.map(bitmap));
  const real = await Promise.all(track.real.map((r) => (r ? bitmap(r) : null)));
  const diff = await Promise.all(frames.map((f, i) => (real[i] ? diffBitmap(f, real[i]) : null)));
  return {frames, real, diff};
}

function el(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") node.textContent = v; else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

function canvas(label, testid) {
  const c = el("canvas", {width: SIZE, height: SIZE, "data-testid": testid});
  const ctx = c.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  return {box: el("figure", {}, [c, el("figcaption", {text: label})]), ctx, canvas: c};
}

function draw(view, bmp) {
  view.ctx.fillStyle = "#222";
  view.ctx.fillRect(0, 0, SIZE, SIZE);
  if (bmp) view.ctx.drawImage(bmp, 0, 0, SIZE, SIZE);
}

const TIP = 128;  // px of a key token's frame on hover

function tokenTip() {
  let tip = document.querySelector("[data-testid=dv-token-frame]");
  if (!tip) {
    const c = el("canvas", {width: TIP, height: TIP, style: "image-rendering: pixelated; display: block"});
    tip = el("figure", {"data-testid": "dv-token-frame", style: "position: fixed; z-index: 100000; display: none; " +
      "pointer-events: none; margin: 0; padding: 4px; background: #fff; color: #333; border: 1px solid #8888; " +
      "border-radius: 4px; font: 12px sans-serif; text-align: center"}, [c, el("figcaption")]);
    document.body.append(tip);
  }
  return tip;
}

function hideTokenTip() {
  const tip = document.querySelector("[data-testid=dv-token-frame]");
  if (tip) { tip.style.display = "none"; tip.dataset.step = ""; }
}

// One listener pair per plotly chart, whichever viewer is current when the hover comes (viewers are rebuilt
// whenever the dream's frames change; the chart may outlive them).
function watchChart(e) {
  const gd = e.target && e.target.closest ? e.target.closest(".js-plotly-plot") : null;
  if (!gd || gd.__dvTokens || typeof gd.on !== "function") return;
  gd.__dvTokens = true;
  gd.on("plotly_hover", (ev) => { if (window.__dvMain) window.__dvMain.showToken(gd, ev); else hideTokenTip(); });
  gd.on("plotly_unhover", hideTokenTip);
}

function fmt(x, digits = 3) {
  return x === null || x === undefined ? "—" : Number(x).toFixed(digits);
}

class Viewer {
  constructor(root, data, trigger) {
    this.root = root; this.data = data; this.trigger = trigger;
    this.track = Math.min(data.track || 0, data.tracks.length - 1);
    this.other = data.compare !== null && data.compare !== undefined ? data.compare : null;
    this.step = 0; this.playing = null; this.decoded = [];
    this.fps = data.fps || 8; this.metric = "pixel"; this.threshold = 0.05; this.alive = true;
    window.__dreamViewer = window.__dreamViewer || {switches: 0, switchMs: [], hoverMs: []};
    this.build();
    if (!data.film) {  // the dream's own viewer serves the key-token frames of its attention charts
      window.__dvMain = this;
      document.addEventListener("pointerover", watchChart, true);
    }
  }

  showToken(gd, ev) {
    const t0 = performance.now();
    const meta = gd.layout && gd.layout.meta && gd.layout.meta.dream_tokens;
    const pt = ev && ev.points && ev.points[0];
    if (!meta || !pt || !this.decoded.length) { hideTokenTip(); return; }
    const col = Array.isArray(pt.pointNumber) ? pt.pointNumber[1] : pt.pointNumber;  // heatmap: [row, column]
    const track = this.data.tracks.findIndex((tr) => tr.id === meta.track);
    const step = meta.steps[col];
    // a, r tokens: the hover text says it; a context step before the start has no frame in the page
    if (meta.modalities[col] !== "z" || track < 0 || !(step >= 0 && step < this.decoded[track].frames.length)) {
      hideTokenTip(); return;
    }
    const tip = tokenTip();
    const ctx = tip.querySelector("canvas").getContext("2d");
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(this.decoded[track].frames[step], 0, 0, TIP, TIP);
    tip.querySelector("figcaption").textContent = `z${step}: imagined frame`;
    tip.dataset.step = String(step);
    tip.dataset.track = meta.track;
    tip.style.display = "block";
    const e = ev.event || {clientX: 0, clientY: 0};
    const w = TIP + 10, h = TIP + 28;  // above and left of the pointer: plotly's hover label goes to its right
    tip.style.left = `${Math.max(0, e.clientX - w - 12)}px`;
    tip.style.top = `${Math.max(0, e.clientY - h - 12)}px`;
    window.__dreamViewer.hoverMs.push(performance.now() - t0);
  }

  async load() {
    this.status.textContent = "decoding frames…";
    this.decoded = await Promise.all(this.data.tracks.map(decodeTrack));
    this.status.textContent = "";
    this.root.querySelector(".dv").dataset.ready = "1";
    this.show(Math.min(this.data.step || 0, this.length() - 1), false);
  }

  length() { return this.data.tracks[this.track].frames.length; }

  build() {
    const d = this.data;
    const pick = (value, onchange, testid) => {
      const s = el("select", {"data-testid": testid, onchange: (e) => onchange(Number(e.target.value))});
      d.tracks.forEach((t, i) => s.append(el("option", {value: i, text: t.label})));
      s.value = value;
      return s;
    };
    this.a = {img: canvas("imagined", "dv-imagined"), real: canvas("real", "dv-real"), diff: canvas("|imagined − real|", "dv-diff")};
    this.b = {img: canvas("imagined (branch B)", "dv-imagined-b"), real: canvas("real (branch B)", "dv-real-b")};
    // film: one imagined frame per track (e.g. per checkpoint) side by side, all at the same step
    this.film = d.film ? d.tracks.map((t, i) => canvas(t.label, `dv-film-${i}`)) : [];
    this.slider = el("input", {type: "range", min: 0, max: 0, value: 0, "data-testid": "dv-slider",
                               oninput: (e) => this.show(Number(e.target.value))});
    this.playBtn = el("button", {text: "▶", "data-testid": "dv-play", onclick: () => this.toggle()});
    const fps = el("input", {type: "number", min: 1, max: 60, value: this.fps, "data-testid": "dv-fps",
                             onchange: (e) => { this.fps = Math.max(1, Math.min(60, Number(e.target.value))); if (this.playing) { this.toggle(); this.toggle(); } }});
    this.info = el("div", {class: "dv-info", "data-testid": "dv-info"});
    this.status = el("span", {class: "dv-status"});
    const trackA = pick(this.track, (i) => { this.track = i; this.show(Math.min(this.step, this.length() - 1)); }, "dv-track");
    const compare = el("input", {type: "checkbox", "data-testid": "dv-compare",
                                 onchange: (e) => { this.other = e.target.checked ? trackB.value * 1 : null; this.show(this.step); }});
    compare.checked = this.other !== null;
    const trackB = pick(this.other ?? Math.min(1, d.tracks.length - 1), (i) => { if (this.other !== null) { this.other = i; this.show(this.step); } }, "dv-track-b");
    this.bBox = el("div", {class: "dv-b"}, [this.b.img.box, this.b.real.box]);
    // timeline and divergence
    this.timeline = el("div", {class: "dv-timeline", "data-testid": "dv-timeline"});
    const metric = el("select", {"data-testid": "dv-metric", onchange: (e) => { this.metric = e.target.value; this.drawTimeline(); }});
    METRICS.forEach(([k, label]) => metric.append(el("option", {value: k, text: label})));
    const threshold = el("input", {type: "number", step: "any", min: 0, value: this.threshold, "data-testid": "dv-threshold",
                                   onchange: (e) => { this.threshold = Number(e.target.value); this.drawTimeline(); }});
    this.divergence = el("span", {class: "dv-divergence", "data-testid": "dv-divergence"});
    // latent grid and actions
    const [C, K] = d.latent_shape;
    const cell = Math.max(3, Math.floor(256 / Math.max(C, K)));
    this.grid = el("canvas", {width: K * cell, height: C * cell, "data-testid": "dv-grid", title: "click a cell: fork with that class for the categorical (row)"});
    this.cell = cell;
    this.grid.addEventListener("click", (e) => {
      const r = this.grid.getBoundingClientRect();
      const k = Math.floor((e.clientX - r.left) / cell), c = Math.floor((e.clientY - r.top) / cell);
      if (c >= 0 && c < C && k >= 0 && k < K) this.fire("edit", {categorical: c, category: k});
    });
    const action = el("select", {"data-testid": "dv-fork-action"});
    d.meanings.forEach((m, i) => action.append(el("option", {value: i, text: m})));
    const buttons = el("div", {class: "dv-actions"}, [
      el("button", {text: "Fork here with", "data-testid": "dv-fork", onclick: () => this.fire("fork", {action: Number(action.value)})}), action,
      el("button", {text: "Futures here", "data-testid": "dv-futures", onclick: () => this.fire("futures")}),
      el("button", {text: "Attention here", "data-testid": "dv-attention", onclick: () => this.fire("attention")}),
    ]);
    if (d.film) buttons.style.display = "none";  // a film compares checkpoints; branch from the main viewer
    const root = el("div", {class: "dv", tabindex: 0, "data-testid": d.film ? "dream-film" : "dream-viewer"}, [
      el("div", {class: "dv-row"}, [el("label", {text: "branch "}), trackA, el("label", {text: " compare with "}), compare, trackB, this.status]),
      d.film ? el("div", {class: "dv-row dv-frames"}, [this.a.real.box, ...this.film.map((f) => f.box)])
             : el("div", {class: "dv-row dv-frames"}, [this.a.img.box, this.a.real.box, this.a.diff.box, this.bBox]),
      el("div", {class: "dv-row"}, [el("button", {text: "⏮", onclick: () => this.show(0)}),
                                    el("button", {text: "◀", "data-testid": "dv-prev", onclick: () => this.show(this.step - 1)}),
                                    this.playBtn,
                                    el("button", {text: "▶|", "data-testid": "dv-next", onclick: () => this.show(this.step + 1)}),
                                    this.slider, el("label", {text: " fps "}), fps]),
      this.info,
      el("div", {class: "dv-row"}, [el("label", {text: "divergence: first step where "}), metric, el("label", {text: " > "}), threshold, this.divergence]),
      this.timeline,
      el("div", {class: "dv-row dv-bottom"}, [el("figure", {}, [this.grid, el("figcaption", {text: `latent z_t: ${C} categoricals × ${K} classes (white: sample; shade: prior confidence)`})]), buttons]),
    ]);
    this.root.replaceChildren(root);
    // several viewers on a page (the dream and its checkpoint film): the keys go to the one clicked last,
    // and to the dream's own viewer before any click
    root.addEventListener("pointerdown", () => { window.__dvActive = this; });
    this.keys = (e) => {
      const t = e.target && e.target.tagName;
      if (t === "INPUT" || t === "SELECT" || t === "TEXTAREA") return;
      const active = window.__dvActive && window.__dvActive.alive ? window.__dvActive : null;
      if (active ? active !== this : this.data.film) return;
      if (e.key === "ArrowRight") { this.show(this.step + 1); e.preventDefault(); }
      else if (e.key === "ArrowLeft") { this.show(this.step - 1); e.preventDefault(); }
      else if (e.key === " ") { this.toggle(); e.preventDefault(); }
      else if (e.key === "Home") { this.show(0); e.preventDefault(); }
      else if (e.key === "End") { this.show(this.length() - 1); e.preventDefault(); }
    };
    document.addEventListener("keydown", this.keys, true);  // capture: Streamlit stops some keys (space)
  }

  fire(kind, extra = {}) {
    this.stop();
    this.trigger("action", {kind, track: this.track, id: this.data.tracks[this.track].id, step: this.step, ...extra, nonce: Date.now()});
  }

  toggle() {
    if (this.playing) { this.stop(); return; }
    if (this.step >= this.length() - 1) this.show(0);
    this.playBtn.textContent = "⏸";
    this.playing = setInterval(() => {  // stops as the last frame is drawn, not a tick later (a key may come between)
      this.show(this.step + 1);
      if (this.step >= this.length() - 1) this.stop();
    }, 1000 / this.fps);
  }

  stop() {
    if (this.playing) clearInterval(this.playing);
    this.playing = null;
    this.playBtn.textContent = "▶";
  }

  show(step, count = true) {
    if (!this.decoded.length) return;
    const t0 = performance.now();
    const n = this.length();
    step = Math.max(0, Math.min(n - 1, step));
    this.step = step;
    const dec = this.decoded[this.track];
    draw(this.a.img, dec.frames[step]);
    draw(this.a.real, dec.real[step]);
    draw(this.a.diff, dec.diff[step]);
    this.film.forEach((f, i) => draw(f, this.decoded[i].frames[Math.min(step, this.decoded[i].frames.length - 1)]));
    this.bBox.style.display = this.other === null ? "none" : "contents";
    if (this.other !== null) {
      const other = this.decoded[this.other];
      const s = Math.min(step, other.frames.length - 1);
      draw(this.b.img, other.frames[s]);
      draw(this.b.real, other.real[s]);
    }
    this.slider.max = n - 1;
    this.slider.value = step;
    this.drawInfo();
    this.drawGrid();
    this.drawTimeline();
    const ms = performance.now() - t0;
    const root = this.root.querySelector(".dv");
    root.dataset.step = String(step);
    root.dataset.switchMs = ms.toFixed(3);
    if (count) { window.__dreamViewer.switches += 1; window.__dreamViewer.switchMs.push(ms); }
    if (!this.data.film) this.syncUrl();
  }

  // Bookmarkable: the step goes into the URL once scrubbing pauses. Not per frame: Streamlit answers a URL change by
  // fetching its favicon again, and a frame switch makes no request.
  syncUrl() {
    clearTimeout(this.urlTimer);
    this.urlTimer = setTimeout(() => {
      if (!this.alive) return;
      const url = new URL(window.location.href);
      if (url.searchParams.get("step") === String(this.step)) return;
      url.searchParams.set("step", String(this.step));
      window.history.replaceState(window.history.state, "", url);
    }, 800);
  }

  drawInfo() {
    const t = this.data.tracks[this.track], s = this.step, e = t.errors[s];
    const parts = [`step ${s} / ${t.frames.length - 1}`];
    if (s > 0) parts.push(`a = ${t.actions[s] ?? "—"}`, `r̂ = ${fmt(t.rewards[s])}`, `γ̂ = ${fmt(t.discounts[s])}`);
    if (t.dones[s]) parts.push("imagined done");
    if (t.restarted[s]) parts.push("restarted");
    if (e) parts.push(`pixel ${fmt(e.pixel)}`, `latent CE ${fmt(e.latent_ce, 2)}`, `|r̂−r| ${fmt(e.reward)}`, `|γ̂−γ| ${fmt(e.discount)}`);
    else if (t.real[s] === null) parts.push("real episode over");
    this.info.textContent = parts.join(" · ");
  }

  drawGrid() {
    const t = this.data.tracks[this.track], [C, K] = this.data.latent_shape, cell = this.cell;
    const ctx = this.grid.getContext("2d");
    ctx.fillStyle = "#111";
    ctx.fillRect(0, 0, K * cell, C * cell);
    const latent = t.latents[this.step], conf = t.confidence[this.step];
    for (let c = 0; c < C; c++) {
      const shade = conf ? Math.round(60 + 195 * conf[c]) : 255;
      ctx.fillStyle = `rgb(${shade},${shade},${shade})`;
      ctx.fillRect(latent[c] * cell, c * cell, cell - 1, cell - 1);
    }
  }

  drawTimeline() {
    const t = this.data.tracks[this.track], n = t.frames.length;
    const W = 640, H = 110, pad = 4;
    const x = (i) => pad + (W - 2 * pad) * (n > 1 ? i / (n - 1) : 0);
    const svg = [`<svg viewBox="0 0 ${W} ${H}" width="100%" height="${H}" xmlns="http://www.w3.org/2000/svg">`];
    let first = null;
    if (this.data.film) {
      const palette = ["#440154", "#3b528b", "#21918c", "#5ec962", "#fde725", "#e45756", "#f58518", "#72b7b2"];
      this.data.tracks.forEach((tr, j) => {
        const vals = tr.errors.map((e) => (e && e[this.metric] !== null && e[this.metric] !== undefined ? e[this.metric] : null));
        const max = Math.max(1e-9, ...this.data.tracks.flatMap((u) => u.errors.map((e) => (e && e[this.metric]) || 0)));
        const pts = vals.map((v, i) => (v === null ? null : `${x(i).toFixed(1)},${(H - pad - (H - 2 * pad) * v / max).toFixed(1)}`)).filter(Boolean);
        svg.push(`<polyline fill="none" stroke="${palette[j % palette.length]}" stroke-width="1.8" points="${pts.join(" ")}"><title>${tr.label}</title></polyline>`);
      });
      first = t.errors.findIndex((e) => e && e[this.metric] !== null && e[this.metric] > this.threshold);
    }
    for (const [key] of this.data.film ? [] : METRICS) {
      const vals = t.errors.map((e) => (e && e[key] !== null && e[key] !== undefined ? e[key] : null));
      const max = Math.max(1e-9, ...vals.filter((v) => v !== null));
      const pts = vals.map((v, i) => (v === null ? null : `${x(i).toFixed(1)},${(H - pad - (H - 2 * pad) * v / max).toFixed(1)}`)).filter(Boolean);
      svg.push(`<polyline fill="none" stroke="${COLORS[key]}" stroke-width="${key === this.metric ? 2.5 : 1}" points="${pts.join(" ")}"/>`);
      if (key === this.metric) first = vals.findIndex((v) => v !== null && v > this.threshold);
    }
    if (first !== null && first >= 0) svg.push(`<line x1="${x(first)}" x2="${x(first)}" y1="0" y2="${H}" stroke="orange" stroke-dasharray="4 3"/>`);
    svg.push(`<line x1="${x(this.step)}" x2="${x(this.step)}" y1="0" y2="${H}" stroke="#888"/>`);
    svg.push("</svg>");
    this.timeline.innerHTML = svg.join("");
    this.timeline.onclick = (e) => {
      const r = this.timeline.getBoundingClientRect();
      this.show(Math.round(((e.clientX - r.left) / r.width) * (n - 1)));
    };
    const legend = this.data.film
      ? `${METRICS.find(([k]) => k === this.metric)[1]} per track (darkest: first) · divergence of the selected track`
      : METRICS.map(([k, label]) => `<span style="color:${COLORS[k]}">■ ${label}</span>`).join(" ");
    this.timeline.insertAdjacentHTML("beforeend", `<div class="dv-legend">${legend} · click to jump</div>`);
    this.divergence.textContent = first === null || first < 0 ? " none" : ` step ${first}`;
    this.divergence.dataset.step = first === null || first < 0 ? "" : String(first);
  }

  destroy() {
    this.alive = false;
    if (window.__dvMain === this) {
      window.__dvMain = null;
      document.removeEventListener("pointerover", watchChart, true);
      hideTokenTip();
    }
    clearTimeout(this.urlTimer);
    this.stop();
    document.removeEventListener("keydown", this.keys, true);
  }
}

export default function (component) {
  const {data, parentElement, setTriggerValue} = component;
  // mount inside our own element: the shadow root also holds the stylesheet Streamlit put there
  const host = parentElement.querySelector(".dv-host") || parentElement;
  if (host.__viewer && host.__viewer.data.version === data.version) return () => {};
  if (host.__viewer) host.__viewer.destroy();
  const viewer = new Viewer(host, data, setTriggerValue);
  host.__viewer = viewer;
  viewer.load();
  return () => { viewer.destroy(); if (host.__viewer === viewer) host.__viewer = null; };
}
