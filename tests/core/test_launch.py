"""A run directory carries its config: `prepare_run`, `open_trainer` and `twm train --run-dir`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from twm_core.launch import attempt_leftovers, open_trainer, prepare_run, read_config, set_aside
from twm_core.presets import make_config
from twm_core.run_dir import RunDir, read_status

REPO_ROOT = Path(__file__).resolve().parents[2]


def _cfg(seed: int = 7):  # noqa: ANN202
    return make_config("debug", "Catch", seed, {"dyn.num_layers": 1, "train.total_steps": 120})


def test_prepared_run_is_queued_and_trained_from_its_config(tmp_path: Path) -> None:
    run = prepare_run(RunDir(tmp_path / "run"), _cfg())
    assert (read_status(run) or {})["state"] == "queued" and (read_status(run) or {})["total_steps"] == 120
    assert read_config(run) == _cfg()
    trainer = open_trainer(run, "cpu")
    try:
        assert trainer.cfg == _cfg() and trainer.cfg.dyn.num_layers == 1
    finally:
        trainer.env.close()
    with pytest.raises(FileExistsError):
        prepare_run(run, _cfg(8))
    assert read_config(run).seed == 7


def test_attempt_without_checkpoint_is_refused_until_set_aside(tmp_path: Path) -> None:
    run = prepare_run(RunDir(tmp_path / "run"), _cfg())
    assert attempt_leftovers(run) == []
    run.metrics_path.write_text('{"step": 20}\n')
    (run.replay_dir).mkdir()
    (run.replay_dir / "chunk_000000.npz").write_bytes(b"x")
    assert attempt_leftovers(run) == ["metrics.jsonl", "replay"]
    with pytest.raises(ValueError, match="earlier attempt with no checkpoint"):
        open_trainer(run, "cpu")
    config = run.config_path.read_bytes()
    aside = tmp_path / ".failed" / "run-attempt1"
    set_aside(run, aside)
    assert (aside / "metrics.jsonl").exists() and not run.metrics_path.exists()
    assert run.config_path.read_bytes() == config and (read_status(run) or {})["state"] == "queued"
    assert attempt_leftovers(run) == []
    open_trainer(run, "cpu").env.close()


def test_cli_run_dir_with_a_config_refuses_config_flags(tmp_path: Path) -> None:
    run = prepare_run(RunDir(tmp_path / "run"), _cfg())
    done = subprocess.run([sys.executable, "-m", "twm_core.cli", "train", "--run-dir", str(run.path),
                           "--seed", "3", "--set", "dyn.num_layers=2"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "its config.json decides, so drop --seed, --set" in done.stderr, done.stderr
    assert json.loads(run.config_path.read_text())["seed"] == 7  # untouched


def test_cli_run_dir_without_a_config_but_with_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text("{}\n")
    done = subprocess.run([sys.executable, "-m", "twm_core.cli", "train", "--run-dir", str(tmp_path / "run"),
                           "--game", "Catch", "--preset", "debug"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "no config.json" in done.stderr, done.stderr
    assert not (tmp_path / "run" / "config.json").exists()
