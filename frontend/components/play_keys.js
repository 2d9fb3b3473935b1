// Play keys: the keyboard drives a dream session. A key sends one trigger value {key, action} to the page (which
// steps the session and sends the new frame back); the frames are drawn here. Keys come from the game's action
// meanings (arrows, space = FIRE, digits = action index), `p` lets the policy act, Backspace undoes a step.
// The time from a key press to the new frame on screen goes to window.__playKeys.latencies (tests read it).
//
// data: {version, step, frame, real, meanings, keymap: [[key, action], ...], caption}

const SIZE = 256;

function decode(b64) {
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return createImageBitmap(new Blob([bytes], {type: "image/png"}));
}

function canvas(host, label) {
  const fig = document.createElement("figure");
  const c = document.createElement("canvas");
  c.width = SIZE; c.height = SIZE;
  const cap = document.createElement("figcaption");
  cap.textContent = label;
  fig.append(c, cap);
  host.append(fig);
  const ctx = c.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  return ctx;
}

async function paint(ctx, b64) {
  ctx.fillStyle = "#222";
  ctx.fillRect(0, 0, SIZE, SIZE);
  if (b64) ctx.drawImage(await decode(b64), 0, 0, SIZE, SIZE);
}

export default function (component) {
  const {data, parentElement, setTriggerValue} = component;
  const host = parentElement.querySelector(".pk-host") || parentElement;
  const stats = (window.__playKeys = window.__playKeys || {latencies: [], pending: null, sent: 0});
  let view = host.__view;
  if (!view) {
    host.replaceChildren();
    const row = document.createElement("div");
    row.className = "pk-row";
    host.append(row);
    const info = document.createElement("div");
    info.className = "pk-info";
    info.setAttribute("data-testid", "pk-info");
    host.append(info);
    view = {imagined: canvas(row, "imagined"), real: canvas(row, "real"), info, root: host};
    host.setAttribute("data-testid", "play-keys");
    host.__view = view;
  }
  view.keymap = new Map(data.keymap);  // pairs: a key like " " must survive the trip from Python
  const onKey = (e) => {
    const t = e.target && e.target.tagName;
    if (t === "INPUT" || t === "SELECT" || t === "TEXTAREA") return;
    let key = null;
    if (e.key === "Backspace") key = "undo";
    else if (e.key === "p") key = "policy";
    else if (view.keymap.has(e.key)) key = String(view.keymap.get(e.key));
    if (key === null) return;
    e.preventDefault();
    // space on a focused button would also click it on keyup (a second step): take the focus away first
    if (t === "BUTTON" && e.target.blur) e.target.blur();
    if (e.repeat && stats.pending !== null) return;  // one step at a time: wait for the frame of the last press
    stats.pending = performance.now();
    stats.sent += 1;
    setTriggerValue("key", {key, nonce: stats.sent});
  };
  // capture phase: Streamlit's main area stops some keys (space) before they bubble up to the document
  document.removeEventListener("keydown", host.__onKey || (() => {}), true);
  document.addEventListener("keydown", onKey, true);
  host.__onKey = onKey;
  if (view.version !== data.version) {
    view.version = data.version;
    Promise.all([paint(view.imagined, data.frame), paint(view.real, data.real)]).then(() => {
      host.dataset.step = String(data.step);
      if (stats.pending !== null) {
        stats.latencies.push(performance.now() - stats.pending);
        stats.pending = null;
      }
    });
    view.info.textContent = data.caption;
  }
  return () => {
    document.removeEventListener("keydown", onKey, true);
  };
}
