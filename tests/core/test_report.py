"""The aggregate report (twm_core.report) and `twm report`, on run directories made with the real writers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import trim_mean

from twm_core.cli import main
from twm_core.config import make_config
from twm_core.metrics import ScoresWriter
from twm_core.report import (
    build_report,
    collect_run_result,
    collect_runs,
    load_reference,
    read_run_result,
    report_markdown,
    write_report,
)
from twm_core.run_dir import RunDir, write_json_atomic, write_status

PONG = {"random": -20.7, "human": 14.6}  # paper Table 1
BREAKOUT = {"random": 1.7, "human": 30.5}
# (game, seed) -> final-evaluation episode scores
FINAL_SCORES = {("Pong", 0): [10.0, 20.0], ("Pong", 1): [-5.0, 5.0],
                ("Breakout", 0): [30.0, 40.0], ("Breakout", 1): [2.0, 4.0]}


def make_run(root: Path, name: str, game: str, seed: int, final: list[float] | None, preset: str = "debug",
             episodes: int = 2, state: str = "finished") -> Path:
    """A run directory written like the trainer's: config.json, status.json, and scores.jsonl rows of every kind."""
    cfg = make_config(preset, game, seed, {"train.final_eval_episodes": episodes})
    run = RunDir(root / name).create()
    write_json_atomic(run.config_path, cfg.to_dict())
    with ScoresWriter(run.scores_path) as scores:
        scores.write(100, "train", -21.0, 800)  # train and periodic eval rows never count
        scores.write(200, "eval", 99.0, 800)
        for score in final or []:
            scores.write(400, "final_eval", score, 900)
    write_status(run, state=state, pid=os.getpid(), step=400)
    return run.path


def hns(score: float, ref: dict[str, float]) -> float:
    return (score - ref["random"]) / (ref["human"] - ref["random"])


@pytest.fixture
def runs_root(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    for (game, seed), final in FINAL_SCORES.items():
        make_run(root, f"{game.lower()}-s{seed}", game, seed, final)
    make_run(root, "catch-s0", "Catch", 0, [3.0, 5.0], preset="catch")
    make_run(root, "pong-s2-training", "Pong", 2, None, state="training")
    return root


def test_collect_run_result_reads_the_final_evaluation(runs_root):
    result = collect_run_result(runs_root / "pong-s1")
    assert (result.game, result.seed, result.run_id, result.score, result.episodes) == ("Pong", 1, "pong-s1", 0.0, 2)
    assert collect_run_result(runs_root / "pong-s2-training") is None
    assert read_run_result(runs_root / "pong-s2-training") == "no final evaluation yet (run is training)"
    assert read_run_result(runs_root / "nothing") == "not a directory"


def test_incomplete_and_repeated_final_evaluations(tmp_path):
    partial = make_run(tmp_path, "partial", "Pong", 0, [1.0], episodes=2, state="failed")
    assert read_run_result(partial) == "final evaluation incomplete: 1 of 2 episodes"
    # A final evaluation repeated after a resume: the last complete set counts.
    repeated = make_run(tmp_path, "repeated", "Pong", 0, [1.0, -7.0, 2.0, 4.0], episodes=2)
    assert collect_run_result(repeated).score == 3.0
    failed = make_run(tmp_path, "failed", "Pong", 0, None, state="failed")
    assert read_run_result(failed) == "no final evaluation (state: failed)"


def test_report_numbers_match_a_hand_computation(runs_root):
    results, skipped = collect_runs([runs_root])
    assert [(s.path.name, s.reason) for s in skipped] == [
        ("pong-s2-training", "no final evaluation yet (run is training)")]
    report = build_report(results, reps=500, seed=0)
    assert set(report) == {"games", "aggregates", "profile", "meta"}
    assert [g["game"] for g in report["games"]] == ["Breakout", "Catch", "Pong"]
    breakout, catch, pong = report["games"]

    assert [(r["run_id"], r["seed"], r["score"], r["episodes"]) for r in pong["runs"]] == [
        ("pong-s0", 0, 15.0, 2), ("pong-s1", 1, 0.0, 2)]
    assert pong["runs"][0]["hns"] == pytest.approx(35.7 / 35.3)
    assert pong["mean_score"] == 7.5 and pong["hns"] == pytest.approx(28.2 / 35.3)
    assert breakout["mean_score"] == 19.0 and breakout["hns"] == pytest.approx(17.3 / 28.8)
    assert pong["paper"] == {"random": -20.7, "human": 14.6, "TWM": 18.8, "DER": -9.7, "CURL": -18.5,
                             "DrQ(eps)": -9.1, "SPR": -5.4, "SimPLe": 12.8}
    assert pong["paper_hns"]["TWM"] == pytest.approx(39.5 / 35.3)
    assert catch["paper"] is None and catch["paper_hns"] is None and catch["hns"] is None
    assert catch["runs"][0]["hns"] is None and catch["mean_score"] == 4.0

    run_hns = [hns(15.0, PONG), hns(0.0, PONG), hns(35.0, BREAKOUT), hns(3.0, BREAKOUT)]
    ours = report["aggregates"]["ours"]
    assert ours["mean"]["value"] == pytest.approx((pong["hns"] + breakout["hns"]) / 2)
    assert ours["median"]["value"] == pytest.approx(ours["mean"]["value"])  # two games
    assert ours["iqm"]["value"] == pytest.approx(np.mean(sorted(run_hns)[1:3]))  # 4 runs: drop one each side
    assert ours["optimality_gap"]["value"] == pytest.approx(np.mean([max(0.0, 1 - x) for x in run_hns]))
    for entry in ours.values():
        assert entry["ci_low"] <= entry["value"] <= entry["ci_high"]


def test_paper_methods_are_restricted_to_our_games(runs_root):
    report = build_report(collect_runs([runs_root])[0], reps=200)
    reference = load_reference()
    twm = [[hns(s, reference[g]) for s in reference[g]["TWM_runs"]] for g in ("Breakout", "Pong")]
    aggregates = report["aggregates"]
    assert list(aggregates) == ["ours", "TWM (paper)", "DER", "CURL", "DrQ(eps)", "SPR", "SimPLe"]
    assert aggregates["TWM (paper)"]["mean"]["value"] == pytest.approx(np.mean(twm))
    assert aggregates["TWM (paper)"]["iqm"]["value"] == pytest.approx(trim_mean(np.ravel(twm), 0.25))
    assert aggregates["TWM (paper)"]["iqm"]["ci_low"] is not None
    assert aggregates["DER"]["mean"] == {"value": pytest.approx((hns(-9.7, PONG) + hns(9.2, BREAKOUT)) / 2),
                                         "ci_low": None, "ci_high": None}
    profile = report["profile"]
    assert set(profile) == {"taus", *aggregates} and len(profile["taus"]) == len(profile["ours"]["fraction"])
    assert profile["DER"]["ci_low"] is None and profile["TWM (paper)"]["ci_low"] is not None
    meta = report["meta"]
    assert (meta["num_runs"], meta["num_games"], meta["reps"], meta["confidence"], meta["seed"]) == (5, 3, 200, 0.95, 0)
    assert len(meta["games_missing"]) == 24 and "Pong" not in meta["games_missing"]
    assert "Catch" in meta["note"] and "no CIs" in meta["note"]
    json.dumps(report, allow_nan=False)  # JSON-serialisable, strictly


def test_only_games_without_reference_scores_give_no_aggregates(tmp_path):
    make_run(tmp_path, "catch", "Catch", 0, [1.0, 2.0], preset="catch")
    report = build_report(collect_runs([tmp_path])[0], reps=100)
    assert report["aggregates"] == {} and list(report["profile"]) == ["taus"]
    assert "| Catch | 1 | 1.5 | – |" in report_markdown(report)


def test_markdown_and_writers(runs_root, tmp_path):
    report = build_report(collect_runs([runs_root])[0], reps=100)
    text = report_markdown(report)
    rows = ("| Breakout | 2 | 19.0 |", "| Catch | 1 | 4.0 |", "| Pong | 2 | 7.5 |", "| TWM (paper) |", "| DER |")
    for needle in rows:
        assert needle in text
    assert json.loads(write_report(report, tmp_path / "out" / "r.json").read_text()) == report
    assert write_report(report, tmp_path / "r.md").read_text() == text
    with pytest.raises(ValueError, match=r"\.json or \.md"):
        write_report(report, tmp_path / "r.txt")


def twm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "twm_core.cli", "report", *args],
                          capture_output=True, text=True, timeout=120)


def test_cli_report_writes_json_and_markdown(runs_root, tmp_path, capsys):
    out = tmp_path / "report.json"
    # The parent directory expands one level; a run named twice is reported once.
    proc = twm(str(runs_root), str(runs_root / "pong-s0"), "--out", str(out), "--reps", "300", "--seed", "3")
    assert proc.returncode == 0, proc.stderr
    assert "| Pong | 2 | 7.5 |" in proc.stdout and "skipped" in proc.stderr and "pong-s2-training" in proc.stderr
    report = json.loads(out.read_text())
    assert report["meta"]["num_runs"] == 5 and report["meta"]["reps"] == 300 and report["meta"]["seed"] == 3
    assert proc.stdout == report_markdown(report)
    # Same command in-process for the Markdown output (spawning again costs a torch import).
    assert main(["report", str(runs_root), "--out", str(tmp_path / "report.md"), "--reps", "300", "--seed", "3"]) == 0
    assert (tmp_path / "report.md").read_text() == proc.stdout == capsys.readouterr().out


def test_cli_report_without_usable_runs_exits_2(runs_root, tmp_path):
    proc = twm(str(runs_root / "pong-s2-training"), str(tmp_path / "missing"))
    assert proc.returncode == 2
    assert "no usable runs" in proc.stderr and "not a directory" in proc.stderr
    assert proc.stdout == ""
