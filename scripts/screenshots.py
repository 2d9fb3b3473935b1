"""Screenshots of the dashboard pages for the README: `python scripts/screenshots.py RUNS_DIR [OUT_DIR] [--pages ...]`.

Starts the backend and the dashboard on free local ports over RUNS_DIR (use a copy: the dashboard can start jobs),
opens each page in Debian's Chromium, presses the page's main button where there is one, and saves
`OUT_DIR/<page>.png` (default `docs/screenshots`); `--pages sweeps,report` takes only those.

What RUNS_DIR should hold:
- Runs, Imagine, Attention, Checkpoints: at least one run with metrics and a checkpoint (any `twm train` run).
- Sweeps, Report (they show the newest sweep): the `jobs.db` that `twm sweep ... --runs-root RUNS_DIR` writes,
  and its runs, finished with a final evaluation (`train.final_eval_episodes` >= 1; the Report page says "No report
  yet" without one). Pick Atari 100k games (Pong, Boxing, ...): they have reference scores, so the aggregate and
  performance-profile figures have something to draw (Catch has none and only shows in the per-game table).
  The README's sweeps.png and report.png come from a tiny sweep, about two minutes on 2 CPU cores:
      OMP_NUM_THREADS=1 twm sweep --games Pong,Boxing --seeds 0-1 --preset debug --steps 110 \
          --set replay.prefill=100 --set train.pretrain_budget=1000 --set train.eval_episodes=0 \
          --set train.final_eval_episodes=1 --runs-root /tmp/shots-runs
      cp -r /tmp/shots-runs /tmp/shots-copy && python scripts/screenshots.py /tmp/shots-copy --pages sweeps,report
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
WIDTH, HEIGHT = 1400, 1500
# (file name, URL path, button to press first, wait for a plotly chart, viewport height)
PAGES = [("home", "", None, False, HEIGHT), ("train", "train", None, False, HEIGHT),
         ("runs", "runs", None, True, HEIGHT), ("imagine", "imagine", "Imagine", True, HEIGHT),
         ("attention", "attention", "Show attention", True, HEIGHT),
         ("checkpoints", "checkpoints", None, False, HEIGHT), ("sweeps", "sweeps", None, False, HEIGHT),
         # Taller: headline, aggregates (figure and table), profile, then the per-game table at the bottom.
         ("report", "report", None, True, 2250)]

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args: list[str], health: str, env: dict[str, str]) -> subprocess.Popen:
    proc = subprocess.Popen(args, cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if httpx.get(health, timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"{args[2]} did not start")


def main(runs_dir: str, out_dir: str = "docs/screenshots", pages: list[str] | None = None) -> None:
    out = ROOT / out_dir
    out.mkdir(parents=True, exist_ok=True)
    api, ui = free_port(), free_port()
    api_url, ui_url = f"http://127.0.0.1:{api}", f"http://127.0.0.1:{ui}"
    backend = start([sys.executable, "-m", "uvicorn", "backend.main:create_app", "--factory", "--port", str(api)],
                    f"{api_url}/api/health", {"TWM_RUNS_DIR": runs_dir, "TWM_DEVICE": "cpu"})
    dashboard = start([sys.executable, "-m", "streamlit", "run", "frontend/streamlit_app.py", "--server.headless",
                       "true", "--server.port", str(ui), "--browser.gatherUsageStats", "false"],
                      f"{ui_url}/_stcore/health", {"TWM_BACKEND_URL": api_url})
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
            for name, path, button, chart, height in PAGES:
                if pages and name not in pages:
                    continue
                page.set_viewport_size({"width": WIDTH, "height": height})
                page.goto(f"{ui_url}/{path}")
                page.wait_for_selector("h1", timeout=60_000)
                if button:
                    page.get_by_role("button", name=button, exact=True).click()
                if chart:
                    page.wait_for_selector(".js-plotly-plot", timeout=120_000)
                page.wait_for_timeout(6000)
                page.screenshot(path=str(out / f"{name}.png"), full_page=True)
            browser.close()
    finally:
        for proc in (dashboard, backend):
            os.killpg(proc.pid, 15)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("runs_dir", help="runs directory to show (a copy: the dashboard can start jobs)")
    parser.add_argument("out_dir", nargs="?", default="docs/screenshots")
    parser.add_argument("--pages", default=None,
                        help=f"comma-separated pages to take (default all: {', '.join(p[0] for p in PAGES)})")
    args = parser.parse_args()
    wanted = args.pages.split(",") if args.pages else None
    unknown = set(wanted or []) - {p[0] for p in PAGES}
    if unknown:
        parser.error(f"unknown pages: {', '.join(sorted(unknown))}")
    main(args.runs_dir, args.out_dir, wanted)
