"""Smoke tests of the benchmark suite (`bench/`): each script, run as `python -m bench.<name>` at the debug preset,
prints its table and writes a complete JSON record.

Subprocesses, not imports: `bench` is not part of the installed distribution (it runs from the repository root, as
its README says), and each script sets process-wide torch state (threads, seeds). No timing asserts: timings on a
shared CI machine mean nothing here; only that each is measured, positive and recorded.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
COMMON = ["--preset", "debug", "--device", "cpu", "--threads", "1", "--repeats", "2", "--warmup", "1"]

SCRIPTS = [
    ("wm_update", ["--game", "Catch"], {"update": "ms", "sample": "ms"}),
    ("ac_update", ["--game", "Catch"], {"imagine": "ms", "update": "ms", "total": "ms"}),
    ("policy", [], {"act": "ms"}),
    ("collect", ["--game", "Catch", "--steps", "50"], {"collect": "steps/s", "policy": "ms/step", "env": "ms/step"}),
    ("train_step", [], {"train_step": "ms"}),
    ("endpoints", [], {"imagine_first": "ms", "imagine": "ms", "attention": "ms"}),
    ("memory", ["--game", "Catch"], {"replay_bytes": "MB", "bytes_per_step": "B", "rss_before": "MB", "rss": "MB",
                                     "peak_rss": "MB", "sample": "ms"}),  # on a CPU: no gpu_train_step
]


def run_bench(name: str, args: list[str]) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", f"bench.{name}", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, f"bench.{name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


def check_record(record: dict[str, Any], name: str, units: dict[str, str], repeats: int = 2) -> None:
    assert record["benchmark"] == name
    assert record["preset"] == "debug" and record["config"]["preset"] == "debug"
    machine = record["machine"]
    for key in ("cpu_model", "cpu_count", "torch", "torch_threads", "device", "platform"):
        assert machine[key], key
    assert machine["device"] == "cpu" and machine["torch_threads"] == 1
    assert record["settings"]["repeats"] == repeats and record["settings"]["warmup"] == 1
    assert record["sizes"]
    assert set(record["measurements"]) == set(units)
    for key, unit in units.items():
        m = record["measurements"][key]
        samples = m["samples"]
        assert m["unit"] == unit and m["description"]
        assert len(samples) == (1 if key.endswith("_first") else repeats)
        assert all(s > 0 for s in samples), (key, samples)
        assert (m["median"], m["min"], m["max"]) == (statistics.median(samples), min(samples), max(samples))
        assert m["q1"] <= m["median"] <= m["q3"] and m["iqr"] == pytest.approx(m["q3"] - m["q1"])
        assert m["std"] == pytest.approx(statistics.stdev(samples) if len(samples) > 1 else 0.0)


@pytest.mark.parametrize(("name", "extra", "units"), SCRIPTS, ids=[s[0] for s in SCRIPTS])
def test_script_writes_record(name: str, extra: list[str], units: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "sub" / f"{name}.json"
    stdout = run_bench(name, [*COMMON, *extra, "--json", str(out)])
    check_record(json.loads(out.read_text()), name, units)
    header = next(line for line in stdout.splitlines() if line.startswith("measure"))
    assert header.split() == ["measure", "median", "min", "max", "IQR", "std", "unit", "n"]
    assert all(any(line.startswith(f"{key} ") for line in stdout.splitlines()) for key in units)


def test_bad_arguments_exit_cleanly() -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "bench.wm_update", "--preset", "debug", "--repeats", "0"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "--repeats" in proc.stderr and "Traceback" not in proc.stderr
