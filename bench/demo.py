"""Time to a learned model on a first start: Home → "Open the demo model" → Imagine → an imagined frame, in Chromium,
from an empty runs directory (seconds), next to the minutes `make demo` took to build the shipped demo (its manifest).

    OMP_NUM_THREADS=1 python -m bench.demo [--json out/demo.json] [--repeats 1]

Starts a private backend and dashboard on free ports over a fresh temporary runs directory for each repeat (the
servers and the browser flow are the ones of `tests/test_e2e_demo_browser.py`), and prints one JSON record:
`{"benchmark": "demo", "first_start_s": {...}, "build_minutes", "final_score", ...}`. Needs Debian's Chromium
(`/usr/bin/chromium`) and Playwright; downloads nothing.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def first_start(browser: Any) -> dict[str, float]:
    """One first start on a fresh runs directory: seconds from opening Home to each milestone."""
    sys.path.insert(0, str(REPO_ROOT / "tests"))  # the test servers and flow: one definition of "first start"
    from helpers import backend_server, dashboard_server
    from test_e2e_demo_browser import open_demo_in_imagine

    with tempfile.TemporaryDirectory(prefix="bench-demo-") as runs_dir:
        with backend_server(Path(runs_dir)) as backend, dashboard_server(backend) as dashboard:
            page = browser.new_page(viewport={"width": 1300, "height": 1100})
            try:
                return open_demo_in_imagine(page, dashboard, screenshots=False)
            finally:
                page.close()


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1, help="first starts to time (each on a fresh runs dir)")
    parser.add_argument("--json", type=Path, default=None, help="also write the record here")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    from twm_core import demo

    manifest = demo.read_manifest()
    samples = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            samples = [first_start(browser) for _ in range(args.repeats)]
        finally:
            browser.close()
    record = {
        "benchmark": "demo", "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "first_start_s": {key: round(statistics.median(s[key] for s in samples), 2) for key in samples[0]},
        "first_start_minutes": round(statistics.median(s["frame"] for s in samples) / 60, 3),
        "samples": samples,
        "build_minutes": manifest["build_minutes"], "final_score": manifest["final_score"],
        "checkpoint_step": manifest["checkpoint_step"], "demo_torch": manifest["torch_version"],
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
    }
    print(json.dumps(record, indent=1))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=1) + "\n")
    return record


if __name__ == "__main__":
    main()
