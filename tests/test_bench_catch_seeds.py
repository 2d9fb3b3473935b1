"""`bench.catch_seeds` without training: its seed grammar, the checked arguments, the train command line, and the
per-seed row and summary read from a hand-made run directory (the files a finished run writes)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

# `bench` is not an installed package and `make test` runs pytest without the repository root on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.catch_seeds import (  # noqa: E402
    build_record,
    format_table,
    parse_args,
    parse_seeds,
    seed_result,
    summarize_seeds,
    train_command,
)


@pytest.mark.parametrize(("text", "seeds"), [("0-4", [0, 1, 2, 3, 4]), ("1", [1]), ("3,1", [3, 1]),
                                             ("0-1,5,1", [0, 1, 5])])
def test_parse_seeds(text: str, seeds: list[int]) -> None:
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["", "a", "4-2", "-1", "1-"])
def test_parse_seeds_rejects(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_seeds(text)


def test_args_and_command(tmp_path: Path) -> None:
    args = parse_args(["--seeds", "1-2", "--set", "ac.actor_lr=1e-3", "--steps", "2000", "--threads", "1",
                       "--keep", str(tmp_path), "--out", str(tmp_path / "r.json")])
    assert args.seeds == [1, 2] and args.threads == 1 and args.keep == tmp_path
    cmd = train_command(args, 2, tmp_path / "seed_2")
    assert cmd[:4] == [sys.executable, "-m", "twm_core.cli", "train"]
    joined = " ".join(cmd)
    for part in ("--preset catch", "--game Catch", "--seed 2", "--device cpu", "--no-progress",
                 f"--run-dir {tmp_path / 'seed_2'}", "--steps 2000", "--set ac.actor_lr=1e-3"):
        assert part in joined, part
    defaults = parse_args([])
    assert defaults.seeds == [0, 1, 2, 3, 4] and defaults.threads == 2 and defaults.target == 4.0
    assert "--steps" not in train_command(defaults, 0, tmp_path)


@pytest.mark.parametrize("argv", [["--set", "no.such_key=1"], ["--set", "ac.actor_lr"], ["--threads", "0"]])
def test_bad_args_fail_before_training(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(argv)


def write_run(run_dir: Path, evals: dict[int, list[float]], final: list[float] | None) -> None:
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({"seed": 1, "preset": "catch", "env": {"game": "Catch"},
                                                     "train": {"final_eval_episodes": len(final or [])}}))
    rows = [{"step": step, "time": 0.0, "kind": "eval", "score": s, "length": 39}
            for step, scores in evals.items() for s in scores]
    rows += [{"step": 4000, "time": 0.0, "kind": "final_eval", "score": s, "length": 39} for s in final or []]
    (run_dir / "scores.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_seed_result_and_summary(tmp_path: Path) -> None:
    write_run(tmp_path / "a", {1000: [-1.0, 1.0], 2000: [3.0, 5.0]}, [5.0, 4.0])
    write_run(tmp_path / "b", {1000: [-3.0]}, None)  # crashed before its final evaluation
    good = seed_result(tmp_path / "a", 0, 8.0, 0, target=4.0, limit=10.0)
    assert good["final_score_mean"] == 4.5 and good["passed"]
    assert good["eval_curve"] == [{"step": 1000, "score_mean": 0.0}, {"step": 2000, "score_mean": 4.0}]
    slow = seed_result(tmp_path / "a", 0, 11.0, 0, target=4.0, limit=10.0)
    assert not slow["passed"]
    bad = seed_result(tmp_path / "b", 1, 3.0, 1, target=4.0, limit=10.0)
    assert bad["final_score_mean"] is None and not bad["passed"]
    summary = summarize_seeds([good, bad])
    assert summary == {"seeds": 2, "passed": 1, "final_min": 4.5, "final_mean": 4.5, "minutes_max": 8.0,
                       "minutes_mean": 5.5}
    table = format_table([good, bad])
    assert "1000:0.00 2000:4.00" in table and "rc=1" in table


def test_record(tmp_path: Path) -> None:
    write_run(tmp_path / "a", {1000: [1.0]}, [4.0])
    args = parse_args(["--seeds", "0", "--set", "train.budget=1747334", "--out", str(tmp_path / "r.json")])
    row = {**seed_result(tmp_path / "a", 0, 9.0, 0, target=4.0, limit=10.0), "cpu_minutes": 8.5}
    record = json.loads(json.dumps(build_record(args, {"train.budget": 1747334}, [row])))  # JSON-clean
    assert record["benchmark"] == "catch_seeds" and record["preset"] == "catch"
    assert record["config"]["train"]["budget"] == 1747334 and record["overrides"] == {"train.budget": 1747334}
    assert record["machine"]["omp_num_threads"] == "2" and record["settings"]["seeds"] == [0]
    assert record["seeds"][0]["cpu_minutes"] == 8.5 and record["summary"]["passed"] == 1
