"""The Inspector in Chromium on a copy of the real debug run: scrub 20 frames with the keyboard with no request and
the switch time measured in the page, play, fork and see two branches, futures, attention at the scrubber's step
(hovering a z key token shows its frame), and a bookmarked URL that reopens the same view. Also: Play on the keyboard
(frames prefetched per action, drawn at the key press and equal to the backend's), with the policy playing until
switched back, the chosen run kept across a page switch, and the Calibration page.
Live uvicorn + streamlit subprocesses; screenshots go to test-artifacts/ (and docs/screenshots/ with
TWM_SCREENSHOTS=1).
"""

from __future__ import annotations

import shutil
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from browser_helpers import ARTIFACTS
from browser_helpers import shoot as _shoot
from helpers import backend_server

pytestmark = pytest.mark.browser

HORIZON = 24


FILM_RUN = "catch-film"


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory: pytest.TempPathFactory, debug_run: Path) -> Path:
    """A copy of the debug run, and a tiny Catch run with four checkpoints (for the film), made by the trainer."""
    from twm_core.presets import make_config
    from twm_core.run_dir import RunDir
    from twm_core.trainer import Trainer

    root = tmp_path_factory.mktemp("inspector-runs")
    shutil.copytree(debug_run, root / debug_run.name)
    cfg = make_config("debug", "Catch", seed=0, overrides={
        "train.total_steps": 160, "replay.prefill": 100, "train.pretrain_budget": 2000, "train.eval_episodes": 0,
        "train.final_eval_episodes": 0, "train.checkpoint_every": 20, "train.keep_checkpoints": 10})
    Trainer(cfg, RunDir(root / FILM_RUN), "cpu").run()
    return root


@pytest.fixture(scope="module")
def backend_url(runs_dir: Path) -> Iterator[str]:
    with backend_server(runs_dir) as url:
        yield url


def shoot(page: Any, name: str) -> None:
    _shoot(page, name, docs=True)


def viewer(page: Any) -> Any:
    return page.get_by_test_id("dream-viewer")


def wait_ready(page: Any, timeout: float = 120_000) -> None:
    page.locator("[data-testid=dream-viewer][data-ready='1']").wait_for(timeout=timeout)


def current_step(page: Any) -> int:
    return int(viewer(page).get_attribute("data-step"))


def focus(page: Any) -> None:
    """Focus the viewer (not an input inside it) so that the keys reach it."""
    viewer(page).click(position={"x": 5, "y": 5})


# The pointer positions of a z key token and the next a token in the attention heatmap (layer 0), from plotly's axes.
KEY_TOKENS_JS = """() => {
  const gd = [...document.querySelectorAll(".js-plotly-plot")].find((g) => g.layout?.meta?.dream_tokens);
  gd.scrollIntoView({block: "center"});
  const m = gd.layout.meta.dream_tokens, xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
  const box = gd.getBoundingClientRect();
  const z = m.modalities.lastIndexOf("z"), a = m.modalities.indexOf("a", z);
  const at = (col) => ({x: box.left + xa._offset + xa.l2p(col), y: box.top + ya._offset + ya.l2p(0)});
  return {step: m.steps[z], track: m.track, z: at(z), a: at(a)};
}"""

HOVER_TEXT_JS = "s => [...document.querySelectorAll('.hoverlayer')].some((h) => h.textContent.includes(s))"

# Mean |difference| of two canvases' red channel after nearest-neighbour downsampling both to the 64×64 frame.
SAME_FRAME_JS = """([a, b]) => {
  const down = (c) => {
    const o = document.createElement("canvas"); o.width = o.height = 64;
    const x = o.getContext("2d"); x.imageSmoothingEnabled = false; x.drawImage(c, 0, 0, 64, 64);
    return x.getImageData(0, 0, 64, 64).data;
  };
  const da = down(a), db = down(b);
  let sum = 0;
  for (let i = 0; i < da.length; i += 4) sum += Math.abs(da[i] - db[i]);
  return sum / (64 * 64);
}"""


def hover_key_tokens(page: Any, requests: list[str]) -> None:
    """Hover a z key token: its step's frame appears, the same as the viewer's at that step, with no request; an a
    token shows its action in the hover text and no frame."""
    tokens = page.evaluate(KEY_TOKENS_JS)
    step = tokens["step"]
    assert step == current_step(page), tokens  # the query's own z: the frame the viewer shows now
    tip = page.locator(f"[data-testid=dv-token-frame][data-step='{step}']")
    requests.clear()
    started = time.monotonic()
    page.mouse.move(tokens["z"]["x"], tokens["z"]["y"])
    tip.wait_for(timeout=10_000)
    hover_s = time.monotonic() - started
    assert tip.get_attribute("data-track") == tokens["track"]
    page.wait_for_function(HOVER_TEXT_JS, arg=f"z{step} (pixel error vs real", timeout=10_000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "inspector-hover.png"))  # the viewport: the frame is placed in it
    difference = page.evaluate(SAME_FRAME_JS, [tip.locator("canvas").element_handle(),
                                               page.get_by_test_id("dv-imagined").element_handle()])
    assert difference < 1.0, difference
    draw_ms = page.evaluate("window.__dreamViewer.hoverMs")
    print(f"hover: z{step} frame shown {1000 * hover_s:.0f} ms after the pointer moved (drawn in "
          f"{max(draw_ms):.2f} ms), {len(requests)} requests")
    page.mouse.move(tokens["a"]["x"], tokens["a"]["y"])
    page.wait_for_function(HOVER_TEXT_JS, arg=f"a{step} = ", timeout=10_000)
    page.get_by_test_id("dv-token-frame").wait_for(state="hidden", timeout=10_000)
    assert requests == [], requests
    page.mouse.move(5, 5)


def open_inspector(page: Any, url: str) -> None:
    page.goto(url, wait_until="domcontentloaded")
    page.get_by_role("heading", name="Inspector", exact=True).wait_for(timeout=60_000)
    wait_ready(page)


def test_scrub_play_fork_futures_attention_and_bookmark(browser: Any, dashboard_url: str, debug_run: Path) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1500})
    run = debug_run.name
    open_inspector(page, f"{dashboard_url}/inspector?run={run}&seed=3&h={HORIZON}")
    assert current_step(page) == 0

    # 20 frames with the keyboard: no request of any kind, each switch timed in the page
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.evaluate("window.__dreamViewer.switchMs = []")
    focus(page)
    for _ in range(20):
        page.keyboard.press("ArrowRight")
    assert current_step(page) == 20
    switch_ms = page.evaluate("window.__dreamViewer.switchMs")
    assert len(switch_ms) == 20 and requests == [], requests  # before the URL catches up (below)
    median = statistics.median(switch_ms)
    print(f"scrub: 20 switches, median {median:.2f} ms, max {max(switch_ms):.2f} ms, 0 requests")
    assert median <= 50
    page.wait_for_timeout(1200)  # scrubbing paused: the step is now in the URL (one favicon fetch by Streamlit)
    assert parse_qs(urlparse(page.url).query)["step"] == ["20"]
    page.keyboard.press("ArrowLeft")
    assert current_step(page) == 19
    shoot(page, "inspector.png")

    # play to the end at the chosen fps, still without requests
    focus(page)
    page.keyboard.press("Home")
    page.get_by_test_id("dv-fps").fill("30")
    page.get_by_test_id("dv-fps").press("Tab")
    requests.clear()
    page.get_by_test_id("dv-play").click()
    page.locator(f"[data-testid=dream-viewer][data-step='{HORIZON}']").wait_for(timeout=10_000)
    assert requests == [], requests  # 24 frames played, no request (the URL waits for the pause)

    # fork at step 6 with another action: two branches, side by side
    focus(page)
    page.keyboard.press("Home")
    for _ in range(6):
        page.keyboard.press("ArrowRight")
    page.get_by_test_id("dv-fork-action").select_option(index=1)
    page.get_by_test_id("dv-fork").click()
    page.locator("[data-testid=dv-track] option").nth(1).wait_for(state="attached", timeout=60_000)
    wait_ready(page)
    assert page.locator("[data-testid=dv-track] option").count() == 2
    assert page.get_by_test_id("dv-compare").is_checked()
    assert current_step(page) == 6 and page.get_by_test_id("dv-imagined-b").is_visible()
    assert "branch=s6a1" in page.url
    page.get_by_text("Branches (2)").wait_for(timeout=10_000)
    shoot(page, "inspector-branches.png")

    # futures from the current frame
    page.get_by_test_id("dv-futures").click()
    page.get_by_text("Futures from step 6").wait_for(timeout=60_000)
    page.get_by_text("σ max", exact=False).first.wait_for(timeout=60_000)
    page.wait_for_timeout(1000)
    assert page.locator("[data-testid=stImage] img").count() >= 7 * 8  # 6 futures × 8 steps + the std row
    shoot(page, "inspector-futures.png")

    # attention opens at the scrubber's step
    wait_ready(page)
    focus(page)
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    page.get_by_test_id("dv-attention").click()
    page.get_by_text("Attention at step 9").wait_for(timeout=60_000)
    page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
    hover_key_tokens(page, requests)
    page.get_by_text("Whole dream, one layer").click()
    page.get_by_text("over the whole dream").wait_for(timeout=60_000)
    shoot(page, "inspector-attention.png")

    # the bookmark reopens the same view: run, seed, step and branch
    bookmark = page.url
    query = parse_qs(urlparse(bookmark).query)
    assert query["run"] == [run] and query["seed"] == ["3"] and query["branch"] == ["s6a1"]
    fresh = browser.new_page(viewport={"width": 1400, "height": 1500})
    open_inspector(fresh, bookmark)
    assert current_step(fresh) == int(query["step"][0])
    assert fresh.locator("[data-testid=dv-track] option").count() == 2
    assert fresh.locator("[data-testid=dv-track]").input_value() == "1"  # the branch is selected again
    fresh.close()
    page.close()


def test_fifty_steps_of_keyboard_play(browser: Any, dashboard_url: str) -> None:
    """On the Catch run (the first in the picker): 50 key presses, each one step, timed from key to frame."""
    page = browser.new_page(viewport={"width": 1300, "height": 1200})
    page.goto(f"{dashboard_url}/play", wait_until="domcontentloaded")
    page.get_by_role("heading", name="Play", exact=True).wait_for(timeout=60_000)
    page.get_by_role("button", name="Reset").click()
    keys = page.get_by_test_id("play-keys")
    page.locator("[data-testid=play-keys][data-step='0']").wait_for(timeout=60_000)
    page.get_by_text(f"{FILM_RUN} · checkpoint step").wait_for(timeout=10_000)  # the newest run: Catch
    page.get_by_role("heading", name="Play", exact=True).click()  # focus the page, not an input
    sequence = ["ArrowRight", "ArrowLeft", "n", "p", "2"]  # Catch: NOOP, LEFT, RIGHT
    for i in range(50):
        page.keyboard.press(sequence[i % len(sequence)])
        page.locator(f"[data-testid=play-keys][data-step='{i + 1}']").wait_for(timeout=30_000)
    page.keyboard.press("Backspace")  # undo: one step back
    page.locator("[data-testid=play-keys][data-step='49']").wait_for(timeout=30_000)
    latencies = page.evaluate("window.__playKeys.latencies")
    assert len(latencies) >= 50
    median = statistics.median(latencies[:50])
    print(f"play: 50 key presses, median {median:.0f} ms from key to frame, max {max(latencies[:50]):.0f} ms")
    assert int(keys.get_attribute("data-step")) == 49
    page.get_by_text("Actions so far:").wait_for(timeout=10_000)
    shoot(page, "play.png")
    page.close()


# The imagined canvas of the Play keys, downsampled (nearest) to the 64×64 frame: its red channel, row-major.
PLAY_CANVAS_JS = """(c) => {
  const o = document.createElement("canvas"); o.width = o.height = 64;
  const x = o.getContext("2d"); x.imageSmoothingEnabled = false; x.drawImage(c, 0, 0, 64, 64);
  const d = x.getImageData(0, 0, 64, 64).data, out = [];
  for (let i = 0; i < d.length; i += 4) out.push(d[i]);
  return out;
}"""


def png_pixels(b64: str) -> Any:
    import base64
    import io

    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("L"))


def test_play_prefetched_frames_are_drawn_at_once_and_equal_the_backend(browser: Any, dashboard_url: str,
                                                                     backend_url: str) -> None:
    """Catch: 20 key presses, each once the candidates of that step are in (a human's pace): every frame comes from
    the prefetch, key → frame timed in the page; the frames shown equal, pixel for pixel, those of the adopted
    session and of a fresh session stepped directly with the same actions, and no session is left behind."""
    import httpx
    import numpy as np

    page = browser.new_page(viewport={"width": 1300, "height": 1200})
    page.goto(f"{dashboard_url}/play", wait_until="domcontentloaded")
    page.get_by_role("heading", name="Play", exact=True).wait_for(timeout=60_000)
    page.get_by_role("button", name="Reset").click()
    page.get_by_text(f"{FILM_RUN} · checkpoint step").wait_for(timeout=60_000)
    page.locator("[data-testid=play-keys][data-step='0'][data-ready='1']").wait_for(timeout=60_000)
    page.get_by_role("heading", name="Play", exact=True).click()
    live = len(httpx.get(f"{backend_url}/api/sessions").json())
    first = page.evaluate("window.__playKeys.latencies.length")
    sequence = ["ArrowRight", "ArrowLeft", "n", "2", "1"]  # Catch: NOOP, LEFT, RIGHT
    for i in range(20):
        page.locator(f"[data-testid=play-keys][data-step='{i}'][data-ready='1']").wait_for(timeout=30_000)
        page.keyboard.press(sequence[i % len(sequence)])
        page.locator(f"[data-testid=play-keys][data-step='{i + 1}']").wait_for(timeout=30_000)
    page.locator("[data-testid=play-keys][data-step='20'][data-ready='1']").wait_for(timeout=30_000)
    stats = page.evaluate("window.__playKeys")
    latencies, prefetched = stats["latencies"][first:], stats["prefetched"][first:]
    shown = [s for s in stats["shown"] if s["step"] >= 1][-20:]
    median, painted = statistics.median(latencies), stats["painted"][-20:]
    print(f"play (prefetched): 20 key presses, median {median:.1f} ms from key to frame drawn, max "
          f"{max(latencies):.1f} ms; to the next frame painted median {statistics.median(painted):.1f} ms, max "
          f"{max(painted):.1f} ms; candidates of the next step in after median "
          f"{statistics.median(stats['readyMs'][-20:]):.0f} ms, max {max(stats['readyMs'][-20:]):.0f} ms")
    assert len(latencies) == 20 and all(prefetched), prefetched
    assert median <= 400  # the goal is 100 ms on a quiet machine; a loaded CI machine gets slack
    assert [s["step"] for s in shown] == list(range(1, 21))

    session = page.get_by_test_id("play-keys").get_attribute("data-session")
    adopted = httpx.get(f"{backend_url}/api/sessions/{session}").json()["points"]
    deadline = time.monotonic() + 15  # the page deletes the forks it no longer needs in the background
    while len(httpx.get(f"{backend_url}/api/sessions").json()) != live:
        assert time.monotonic() < deadline, "forks were left behind"
        page.wait_for_timeout(100)
    direct = httpx.post(f"{backend_url}/api/sessions", timeout=120, json={
        "run_id": FILM_RUN, "checkpoint": "latest", "seed": 0, "real": True,
        "start": {"kind": "reset", "policy_steps": 0}, "actions": [s["action"] for s in shown]}).json()
    httpx.delete(f"{backend_url}/api/sessions/{direct['id']}")
    readouts = ("action", "reward", "discount", "done", "latent", "errors")
    assert [{k: p[k] for k in readouts} for p in adopted] == [{k: p[k] for k in readouts} for p in direct["points"]]
    for s in shown:
        for points in (adopted, direct["points"]):
            point = points[s["step"]]
            assert np.array_equal(png_pixels(s["frame"]), png_pixels(point["frame"])), s["step"]
            assert (s["real"] is None) == (point["real"] is None)
            if s["real"] is not None:
                assert np.array_equal(png_pixels(s["real"]), png_pixels(point["real"]["frame"])), s["step"]
    pixels = page.get_by_test_id("play-keys").locator("canvas").first.evaluate(PLAY_CANVAS_JS)
    canvas = np.asarray(pixels, dtype=np.uint8).reshape(64, 64)
    assert np.array_equal(canvas, png_pixels(direct["points"][20]["frame"])), "the canvas differs from the frame"
    page.close()


def play_step(page: Any) -> int:
    return int(page.get_by_test_id("play-keys").get_attribute("data-step"))


def wait_step_at_least(page: Any, step: int, timeout: float = 60.0) -> None:
    """Poll: while the policy plays, the step moves on faster than a wait for one exact value can see it."""
    deadline = time.monotonic() + timeout
    while play_step(page) < step:
        assert time.monotonic() < deadline, f"step {play_step(page)} < {step} after {timeout} s"
        page.wait_for_timeout(50)


def wait_driver(page: Any, driver: str) -> None:
    page.locator(f"[data-testid=play-keys][data-driver='{driver}']").wait_for(timeout=30_000)


def test_the_policy_plays_until_switched_back(browser: Any, dashboard_url: str) -> None:
    """The Human | Policy toggle: the policy steps on its own until switched back (button, `P`, or an action key),
    and the keys work as before in between."""
    page = browser.new_page(viewport={"width": 1300, "height": 1200})
    page.goto(f"{dashboard_url}/play", wait_until="domcontentloaded")
    page.get_by_role("heading", name="Play", exact=True).wait_for(timeout=60_000)
    page.get_by_role("button", name="Reset").click()
    page.locator("[data-testid=play-keys][data-step='0']").wait_for(timeout=60_000)
    wait_driver(page, "human")
    assert page.get_by_test_id("pk-human").get_attribute("aria-pressed") == "true"

    started = time.monotonic()
    page.get_by_test_id("pk-policy").click()
    wait_driver(page, "policy")
    wait_step_at_least(page, 12)  # 12 steps, no key pressed
    rate = 12 / (time.monotonic() - started)
    assert page.get_by_test_id("pk-policy").get_attribute("aria-pressed") == "true"
    page.get_by_text("the policy plays").first.wait_for(timeout=10_000)
    shoot(page, "play-policy.png")

    page.get_by_test_id("pk-human").click()  # switched back: at most the step on its way still lands
    wait_driver(page, "human")
    stopped = play_step(page)
    page.wait_for_timeout(1500)
    assert play_step(page) <= stopped + 1
    settled = play_step(page)
    page.wait_for_timeout(1000)
    assert play_step(page) == settled, "the policy went on after it was switched back"

    page.get_by_role("heading", name="Play", exact=True).click()  # the keys: one step each, as before
    page.keyboard.press("ArrowRight")
    page.locator(f"[data-testid=play-keys][data-step='{settled + 1}']").wait_for(timeout=30_000)
    page.keyboard.press("P")  # the key of the toggle
    wait_driver(page, "policy")
    wait_step_at_least(page, settled + 5)
    page.keyboard.press("ArrowLeft")  # an action key takes over
    wait_driver(page, "human")
    page.wait_for_timeout(1500)
    settled = play_step(page)
    page.wait_for_timeout(1000)
    assert play_step(page) == settled
    policy_ms = page.evaluate("window.__playKeys.policyMs")
    print(f"policy drives: {rate:.1f} steps/s over 12 steps (cap 8/s), median {statistics.median(policy_ms):.0f} ms "
          f"from a policy step to its frame over {len(policy_ms)} steps")
    page.close()


def test_checkpoint_film_over_every_retained_checkpoint(browser: Any, dashboard_url: str, backend_url: str) -> None:
    import httpx

    steps = [c["step"] for c in httpx.get(f"{backend_url}/api/runs/{FILM_RUN}/checkpoints",
                                          timeout=30).json()["checkpoints"]]
    assert len(steps) >= 3, steps
    page = browser.new_page(viewport={"width": 1500, "height": 1500})
    open_inspector(page, f"{dashboard_url}/inspector?run={FILM_RUN}&seed=1&h=12")
    page.get_by_role("button", name="Make the film").click()
    film = page.locator("[data-testid=dream-film][data-ready='1']")
    film.wait_for(timeout=120_000)
    for i, step in enumerate(sorted(steps)):
        assert page.get_by_test_id(f"dv-film-{i}").is_visible()
        page.locator("figcaption", has_text=f"step {step}").first.wait_for(timeout=10_000)
    page.get_by_test_id("dream-film").click(position={"x": 5, "y": 5})
    for _ in range(5):
        page.keyboard.press("ArrowRight")
    assert film.get_attribute("data-step") == "5"
    shoot(page, "inspector-film.png")
    page.close()


def wait_value(page: Any, label: str, value: str, timeout: float = 30_000) -> None:
    """Wait until the Streamlit selectbox labelled `label` shows `value` (its combobox input holds it)."""
    from playwright.sync_api import expect

    expect(page.get_by_role("combobox", name=label, exact=True)).to_have_value(value, timeout=timeout)


def pick(page: Any, label: str, option: str) -> None:
    """Choose `option` in the Streamlit selectbox labelled `label`."""
    page.get_by_role("combobox", name=label, exact=True).click()
    page.keyboard.type(option)  # the option list is virtualised: filter it down first
    page.get_by_role("option", name=option, exact=True).click()
    page.get_by_role("option").first.wait_for(state="detached", timeout=10_000)
    wait_value(page, label, option)


def test_switching_page_keeps_the_run(browser: Any, dashboard_url: str, debug_run: Path) -> None:
    """Pick the older run and a checkpoint on Imagine, go to Attention through the sidebar: the same are picked."""
    page = browser.new_page(viewport={"width": 1300, "height": 1000})
    run = debug_run.name  # older than the Catch run, so not what a page opens on by itself
    page.goto(f"{dashboard_url}/imagine", wait_until="domcontentloaded")
    page.get_by_role("heading", name="Imagine", exact=True).wait_for(timeout=60_000)
    wait_value(page, "Run", FILM_RUN, timeout=60_000)
    pick(page, "Run", run)
    wait_value(page, "Checkpoint", "latest")
    pick(page, "Checkpoint", "step 100")
    page.wait_for_function("u => location.search.includes(u)", arg="ckpt=100", timeout=30_000)
    started = time.monotonic()
    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Attention", exact=True).click()
    page.get_by_role("heading", name="Attention", exact=True).wait_for(timeout=60_000)
    wait_value(page, "Run", run)
    wait_value(page, "Checkpoint", "step 100")
    print(f"page switch: Attention shows the chosen run and checkpoint {time.monotonic() - started:.2f} s after "
          "the click")
    # the widgets show the choice first; the page writes it back into the URL right after
    page.wait_for_function("u => location.search.includes(u)", arg="ckpt=100", timeout=30_000)
    query = parse_qs(urlparse(page.url).query)
    assert query["run"] == [run] and query["ckpt"] == ["100"] and urlparse(page.url).path.endswith("/attention")
    page.close()


def test_calibration_of_the_latest_checkpoints(browser: Any, dashboard_url: str, backend_url: str) -> None:
    """The Catch run's Calibration page (its four latest checkpoints), as the README shows it."""
    import httpx

    steps = sorted(c["step"] for c in httpx.get(f"{backend_url}/api/runs/{FILM_RUN}/checkpoints",
                                                timeout=30).json()["checkpoints"])
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    started = time.monotonic()
    page.goto(f"{dashboard_url}/calibration?run={FILM_RUN}", wait_until="domcontentloaded")
    page.get_by_role("heading", name="Calibration", exact=True).wait_for(timeout=60_000)
    page.locator(".js-plotly-plot").filter(has_text="Discount").first.wait_for(timeout=180_000)
    page.locator(".js-plotly-plot").filter(has_text="Reward").first.wait_for(timeout=10_000)
    print(f"calibration: {len(steps[-4:])} checkpoints evaluated and drawn {time.monotonic() - started:.1f} s "
          "after opening the page")
    table = page.get_by_test_id("stTable")
    for step in steps[-4:]:
        table.get_by_text(str(step), exact=True).first.wait_for(timeout=10_000)
    shoot(page, "calibration.png")
    page.close()
