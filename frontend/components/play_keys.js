// Play keys: the keyboard drives a dream session. A key sends one trigger value {key, action} to the page (which
// steps the session and sends the new frame back); the frames are drawn here. Keys come from the game's action
// meanings (arrows, space = FIRE, digits = action index), `p` lets the policy take one step, Backspace undoes one.
//
// Who acts: the Human | Policy toggle (or `P`) hands the game to the policy, which then keeps stepping from here,
// one step after the frame of the last one is in and at most `steps/s` a second, until switched back (the toggle,
// `P`, or any action key or Backspace, which take over). The page keeps the choice (`data.driver`); a step that fails
// hands the game back to the human.
//
// Prefetch: with `data.candidates` (the next frame under every action, forks the page made at this step), an action
// key draws its candidate at once and then tells the page, which adopts that fork. A key pressed while the page is
// still busy waits for its answer (then takes a candidate if there is one by then, else the plain path: one step
// request, drawn when its frame comes back); keys are sent one at a time, so none is lost.
//
// The time from a key press to the new frame on screen goes to window.__playKeys.latencies (and whether the frame
// came from a candidate to .prefetched, the frames shown to .shown; for a candidate also the time to the paint after
// it to .painted and to the next step's candidates to .readyMs), that of a policy step the toggle made to
// window.__playKeys.policyMs (tests read them). `data-ready="1"`: candidates for the shown step are in, none pending.
//
// data: {version, session, step, frame, real, keymap: [[key, action], ...], caption, driver: "human" | "policy",
//        turn, candidates: {key, step, frames: [[action, frame, real, caption], ...]} | null}
//       (turn counts the commands the page has handled: a new turn means the last one was answered)

const SIZE = 256;
const STEPS_PER_S = 8;

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

function draw(ctx, bitmap) {
  ctx.fillStyle = "#222";
  ctx.fillRect(0, 0, SIZE, SIZE);
  if (bitmap) ctx.drawImage(bitmap, 0, 0, SIZE, SIZE);
}

async function paint(ctx, b64) {
  draw(ctx, b64 ? await decode(b64) : null);
}

// The candidates of one step, decoded ahead (a key press then only draws): action → {frame, real, caption, images}
function prepare(view, candidates) {
  view.candidates = null;
  view.candidatesKey = candidates ? candidates.key : null;
  if (!candidates) return Promise.resolve();
  const ready = new Map();
  const key = candidates.key;
  return Promise.all(candidates.frames.map(async ([action, frame, real, caption]) => {
    const images = await Promise.all([decode(frame), real ? decode(real) : null]);
    ready.set(action, {frame, real, caption, images});
  })).then(() => {
    if (view.candidatesKey !== key) return;  // a newer step came in meanwhile
    view.candidates = {key, step: candidates.step, byAction: ready};
    markReady(view);
  });
}

function markReady(view) {
  const ready = view.candidates !== null && !view.inflight && view.queue.length === 0;
  if (ready && view.pressedAt !== null) {  // from the last prefetched key to the candidates of the next step
    window.__playKeys.readyMs.push(performance.now() - view.pressedAt);
    view.pressedAt = null;
  }
  view.root.dataset.ready = ready ? "1" : "0";
}

function button(text, testid, onclick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  b.setAttribute("data-testid", testid);
  b.addEventListener("click", onclick);
  return b;
}

// The Human | Policy toggle and the policy's pace.
function driverBar(view) {
  const bar = document.createElement("div");
  bar.className = "pk-driver";
  const label = document.createElement("span");
  label.textContent = "Who acts:";
  view.humanBtn = button("Human", "pk-human", () => view.drive("human"));
  view.policyBtn = button("Policy", "pk-policy", () => view.drive("policy"));
  view.humanBtn.title = "You act, one key per step";
  view.policyBtn.title = "The policy acts, step after step, until switched back (P toggles)";
  const pace = document.createElement("label");
  pace.textContent = " steps/s ";
  const fps = document.createElement("input");
  Object.assign(fps, {type: "number", min: 1, max: 30, value: view.fps});
  fps.setAttribute("data-testid", "pk-fps");
  fps.addEventListener("change", () => { view.fps = Math.max(1, Math.min(30, Number(fps.value) || STEPS_PER_S)); });
  pace.append(fps);
  bar.append(label, view.humanBtn, view.policyBtn, pace);
  return bar;
}

function showDriver(view) {
  const policy = view.driver() === "policy";
  view.humanBtn.setAttribute("aria-pressed", String(!policy));
  view.policyBtn.setAttribute("aria-pressed", String(policy));
  view.root.dataset.driver = view.driver();
}

// The next policy step, when the policy drives (the page has confirmed it, and no switch back is on its way) and no
// step is: at most fps a second. Two commands sent at once could reach the page as one rerun, losing the first.
function policyDrives(view) {
  return view.confirmed === "policy" && view.driver() === "policy" && !view.inflight && view.root.isConnected;
}

function schedule(view) {
  clearTimeout(view.timer);
  if (!policyDrives(view)) return;
  const wait = Math.max(0, 1000 / view.fps - (performance.now() - view.lastSent));
  view.timer = setTimeout(() => { if (policyDrives(view)) view.send("policy", true); }, wait);
}

// A command from a key, pressed at time t: at once when the page is free, else after its answer.
function press(view, stats, key, t) {
  if (view.inflight) {
    view.queue.push({key, t});
    markReady(view);
    return;
  }
  const action = /^[0-9]+$/.test(key) ? Number(key) : null;
  const c = action !== null && view.driver() === "human" && view.candidates &&
    view.candidates.step === view.shownStep ? view.candidates.byAction.get(action) : undefined;
  if (c === undefined) {
    view.send(key, false, t);
    return;
  }
  draw(view.imagined, c.images[0]);
  draw(view.real, c.images[1]);
  view.info.textContent = c.caption;
  view.shownStep = view.candidates.step + 1;
  view.shown = {frame: c.frame, real: c.real};
  view.root.dataset.step = String(view.shownStep);
  stats.latencies.push(performance.now() - t);
  stats.prefetched.push(true);
  // the browser paints after the next animation frame's callbacks: the second callback runs once it has
  requestAnimationFrame(() => requestAnimationFrame(() => stats.painted.push(performance.now() - t)));
  view.pressedAt = t;
  stats.shown.push({step: view.shownStep, action, frame: c.frame, real: c.real});
  view.candidates = null;
  view.inflight = true;
  markReady(view);
  stats.sent += 1;
  view.setTrigger("key", {key, nonce: stats.sent, candidates: view.candidatesKey});
}

export default function (component) {
  const {data, parentElement, setTriggerValue} = component;
  const host = parentElement.querySelector(".pk-host") || parentElement;
  const stats = (window.__playKeys = window.__playKeys ||
    {latencies: [], prefetched: [], painted: [], readyMs: [], shown: [], policyMs: [], pending: null, sent: 0});
  let view = host.__view;
  if (!view) {
    host.replaceChildren();
    view = {root: host, fps: STEPS_PER_S, wanted: null, confirmed: "human", inflight: false, lastSent: 0, turn: null,
            queue: [], candidates: null, candidatesKey: null, shownStep: null, shown: null,
            prepared: Promise.resolve(), pressedAt: null};
    // the toggle's choice until the page confirms it, then the page's
    view.driver = () => view.wanted ?? view.confirmed;
    host.append(driverBar(view));
    const row = document.createElement("div");
    row.className = "pk-row";
    host.append(row);
    const info = document.createElement("div");
    info.className = "pk-info";
    info.setAttribute("data-testid", "pk-info");
    host.append(info);
    Object.assign(view, {imagined: canvas(row, "imagined"), real: canvas(row, "real"), info});
    host.setAttribute("data-testid", "play-keys");
    host.__view = view;
  }
  // a command that makes a frame: timed from here to its frame on screen
  view.setTrigger = setTriggerValue;
  view.send = (key, auto = false, t = performance.now()) => {
    view.inflight = true;
    view.lastSent = performance.now();
    stats.pending = {t, auto};
    markReady(view);
    stats.sent += 1;
    setTriggerValue("key", {key, nonce: stats.sent});
  };
  view.drive = (who) => {
    view.wanted = who;
    showDriver(view);
    stats.sent += 1;
    setTriggerValue("key", {key: `drive:${who}`, nonce: stats.sent});
    clearTimeout(view.timer);  // the policy starts once the page has confirmed it (the next render)
  };
  let answered = false;
  if (data.turn !== view.turn) {  // the page answered the last command (a frame, or an error): the next may go
    view.turn = data.turn;
    view.inflight = false;
    answered = true;
  }
  view.confirmed = data.driver || "human";
  if (view.wanted === view.confirmed) view.wanted = null;
  showDriver(view);
  view.keymap = new Map(data.keymap);  // pairs: a key like " " must survive the trip from Python
  const onKey = (e) => {
    const t = e.target && e.target.tagName;
    if (t === "INPUT" || t === "SELECT" || t === "TEXTAREA") return;
    if (e.key === "P") {
      e.preventDefault();
      view.drive(view.driver() === "policy" ? "human" : "policy");
      return;
    }
    let key = null;
    if (e.key === "Backspace") key = "undo";
    else if (e.key === "p") key = "policy";
    else if (view.keymap.has(e.key)) key = String(view.keymap.get(e.key));
    if (key === null) return;
    e.preventDefault();
    // space on a focused button would also click it on keyup (a second step): take the focus away first
    if (t === "BUTTON" && e.target.blur) e.target.blur();
    if (e.repeat && (view.inflight || view.queue.length)) return;  // a held key: one step per answer
    if (key !== "policy" && view.driver() === "policy") {  // a human key takes over (the page does the same)
      view.wanted = "human";
      showDriver(view);
      clearTimeout(view.timer);
    }
    press(view, stats, key, performance.now());
  };
  // capture phase: Streamlit's main area stops some keys (space) before they bubble up to the document
  document.removeEventListener("keydown", host.__onKey || (() => {}), true);
  document.addEventListener("keydown", onKey, true);
  host.__onKey = onKey;
  host.dataset.session = data.session;
  if (view.version !== data.version) {
    view.version = data.version;
    view.prepared = prepare(view, view.driver() === "human" ? data.candidates : null);
    // drawn from its candidate already: no second draw
    const same = view.shown && view.shown.frame === data.frame && view.shown.real === data.real;
    view.shownStep = data.step;
    view.shown = {frame: data.frame, real: data.real};
    const drawn = same ? Promise.resolve() :
      Promise.all([paint(view.imagined, data.frame), paint(view.real, data.real)]);
    drawn.then(() => {
      host.dataset.step = String(data.step);
      if (stats.pending !== null) {
        const ms = performance.now() - stats.pending.t;
        if (stats.pending.auto) stats.policyMs.push(ms);
        else {
          stats.latencies.push(ms);
          stats.prefetched.push(false);
        }
        stats.pending = null;
      }
      schedule(view);
    });
    view.info.textContent = data.caption;
  } else {
    view.info.textContent = data.caption;
    schedule(view);
  }
  markReady(view);
  if (answered && view.queue.length) {  // the next key pressed meanwhile (once its candidates are decoded)
    const next = view.queue.shift();
    view.prepared.then(() => press(view, stats, next.key, next.t));
  }
  return () => {
    clearTimeout(view.timer);
    document.removeEventListener("keydown", onKey, true);
  };
}
