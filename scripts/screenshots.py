"""Screenshots of every dashboard page for the README: `python scripts/screenshots.py RUNS_DIR [OUT_DIR]`.

Starts the backend and the dashboard on free local ports over RUNS_DIR (use a copy: the dashboard can start jobs),
opens each page in Debian's Chromium, presses the page's main button where there is one, and saves
`OUT_DIR/<page>.png` (default `docs/screenshots`).
"""

from __future__ import annotations

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
# (file name, URL path, button to press first, wait for a plotly chart)
PAGES = [("home", "", None, False), ("train", "train", None, False), ("runs", "runs", None, True),
         ("imagine", "imagine", "Imagine", True), ("attention", "attention", "Show attention", True),
         ("checkpoints", "checkpoints", None, False)]


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


def main(runs_dir: str, out_dir: str = "docs/screenshots") -> None:
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
            page = browser.new_page(viewport={"width": 1400, "height": 1500})
            for name, path, button, chart in PAGES:
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
    main(*sys.argv[1:])
