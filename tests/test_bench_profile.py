"""`bench.profile` on each hot path at the debug preset: the parts of the model are attributed, the FLOPs counted,
and the floor they imply lies below the measured time (a FLOP count off by orders of magnitude would not)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

PARTS = {
    "wm_update": {"world_model_update", "encoder cnn", "decoder cnn", "transformer", "reward head", "optimizer"},
    "ac_update": {"imagine", "actor_critic_update", "transformer", "actor", "critic", "optimizer"},
    "policy": {"encoder cnn", "encoder mlp", "actor"},
}


@pytest.mark.parametrize("path", sorted(PARTS))
def test_profile_attributes_time_and_counts_flops(path: str, tmp_path: Path) -> None:
    out = tmp_path / f"{path}.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.profile", "--path", path, "--preset", "debug", "--game", "Catch",
         "--device", "cpu", "--repeats", "1", "--warmup", "1", "--top", "5", "--json", str(out)],
        cwd=REPO_ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    measured = {name: m["median"] for name, m in json.loads(out.read_text())["measurements"].items()}
    parts = {name[len("part "):] for name in measured if name.startswith("part ")}
    assert PARTS[path] <= parts, f"missing parts: {PARTS[path] - parts}"
    assert all(measured[f"part {p}"] > 0 for p in PARTS[path])
    assert len([n for n in measured if n.startswith("op ")]) == 5
    assert measured["gflop"] > 0 and measured["matmul rate"] > 0
    assert 0 < measured["floor"] < measured["wall"]
