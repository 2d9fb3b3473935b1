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
from twm_core.metrics import ScoresWriter
from twm_core.presets import make_config
from twm_core.report import (
    build_report,
    collect_run_result,
    collect_runs,
    load_reference,
    presets_of,
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
    make_run(root, "catch-s0", "Catch", 0, [3.0, 5.0])
    make_run(root, "pong-s2-training", "Pong", 2, None, state="training")
    return root


def test_presets_are_never_pooled_and_only_the_papers_is_comparable(runs_root, tmp_path):
    make_run(runs_root, "pong-paper-s0", "Pong", 0, [10.0, 12.0], preset="atari100k")
    make_run(runs_root, "pong-catch-s5", "Pong", 5, [-21.0, -21.0], preset="catch")
    results, _ = collect_runs([runs_root])
    assert presets_of(results) == ["atari100k", "debug", "catch"]  # the paper's first, then by number of runs
    paper = build_report(results, reps=0)
    assert paper["meta"]["preset"] == "atari100k" and paper["meta"]["comparable"] is True
    assert [(g["game"], [r["run_id"] for r in g["runs"]]) for g in paper["games"]] == [("Pong", ["pong-paper-s0"])]
    left_out = {entry["run_id"]: entry["reason"] for entry in paper["meta"]["skipped"]}
    assert "a report never pools presets" in left_out["pong-s0"] and "'catch'" in left_out["pong-catch-s5"]
    assert "not comparable" not in paper["meta"]["note"]

    debug_report = build_report(results, reps=0, preset="debug")
    assert debug_report["meta"]["comparable"] is False and "NOT comparable" in debug_report["meta"]["note"]
    assert {r["run_id"] for g in debug_report["games"] for r in g["runs"]} == {
        "breakout-s0", "breakout-s1", "catch-s0", "pong-s0", "pong-s1"}
    assert "**Preset `debug`: not the paper's method" in report_markdown(debug_report)
    with pytest.raises(ValueError, match="no run of preset 'huge'"):
        build_report(results, preset="huge")


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


# ------------------------------------------------------------------------------------------------ damaged runs
def _append(path: Path, data: bytes) -> None:
    with path.open("ab") as f:
        f.write(data)


def _write(path: Path, data: bytes) -> None:
    path.unlink()
    path.write_bytes(data)


def _replace_with_dir(path: Path) -> None:
    path.unlink()
    path.mkdir()


GARBAGE_LINES = b'not json\n\xff\xfe invalid utf-8\n[1, 2]\n{"kind": "final_eval", "score": 1.0}\n{"step": "x"}\n'
# name -> (how the run "bad" (Pong seed 3, final scores [-5, 5]) is damaged, in the report?, expected reason)
DAMAGE = {
    "config not utf-8": (lambda r: _write(r / "config.json", b'{"seed": 3, "env": {"game": "Pong\xff"}}'), False,
                         "damaged: bad/config.json: not valid UTF-8 (byte 33)"),
    "config garbage": (lambda r: _write(r / "config.json", b"{oops"), False, "damaged: bad/config.json: "),
    "config a list": (lambda r: _write(r / "config.json", b"[1, 2]"), False,
                      "damaged: bad/config.json: expected a JSON object, got list"),
    "config a directory": (lambda r: _replace_with_dir(r / "config.json"), False,
                           "damaged: bad/config.json: is a directory, not a file"),
    "config env not an object": (lambda r: _write(r / "config.json", b'{"seed": 3, "env": "Pong"}'), False,
                                 "lacks env.game or seed (bad/config.json: env is str, expected an object)"),
    "scores garbage lines": (lambda r: _append(r / "scores.jsonl", GARBAGE_LINES), True,
                             "bad/scores.jsonl: 5 unreadable lines skipped"),
    "scores torn tail": (lambda r: _append(r / "scores.jsonl", b'{"step": 400, "kind": "final_ev'), True, None),
    "scores NaN score": (lambda r: _append(r / "scores.jsonl", b'{"step": 500, "kind": "final_eval", "score": NaN}\n'
                                           b'{"step": 500, "kind": "final_eval", "score": 1}\n'), False,
                         "final evaluation has a non-finite score (bad/scores.jsonl: non-finite numbers"),
    "scores all garbage": (lambda r: _write(r / "scores.jsonl", GARBAGE_LINES), False,
                           "no final evaluation (state: finished) (bad/scores.jsonl: 5 unreadable lines skipped)"),
    "scores a directory": (lambda r: _replace_with_dir(r / "scores.jsonl"), False,
                           "no final evaluation (state: finished) (bad/scores.jsonl: is a directory, not a file)"),
    "scores a symlink out": (lambda r: (r / "scores.jsonl").unlink() or (r / "scores.jsonl").symlink_to("/etc/passwd"),
                             False, "bad/scores.jsonl: a symlink out of the run directory (not followed)"),
    "metrics garbage": (lambda r: (r / "metrics.jsonl").write_bytes(GARBAGE_LINES), True, None),
    "status garbage": (lambda r: _write(r / "status.json", b"\xff{"), True, None),  # a result needs no status
}


@pytest.mark.parametrize("kind", DAMAGE)
def test_a_damaged_run_never_breaks_the_report(runs_root: Path, tmp_path: Path, kind: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    healthy_results, healthy_skipped = collect_runs([runs_root])
    healthy = build_report(healthy_results, reps=200, skipped=healthy_skipped)
    damage, included, reason = DAMAGE[kind]
    damage(make_run(runs_root, "bad", "Pong", 3, [-5.0, 5.0]))

    results, skipped = collect_runs([runs_root])
    report = build_report(results, reps=200, skipped=skipped)
    json.dumps(report, allow_nan=False)
    meta = report["meta"]
    assert [s["run_id"] for s in meta["skipped"]] == sorted(["pong-s2-training", *([] if included else ["bad"])])
    named = {entry["run_id"]: entry["reason"] for entry in meta["skipped"] + meta["damaged"]}
    if reason is None:
        assert "bad" not in named
    else:
        assert reason in named["bad"] and str(tmp_path) not in named["bad"]  # files named by run, not server path
        assert f"- bad: {named['bad']}" in report_markdown(report)
    games = {g["game"]: g for g in report["games"]}
    if included:  # the damaged run's readable rows count; every other number is as without it
        pong = games.pop("Pong")
        assert [(r["run_id"], r["score"]) for r in pong["runs"]] == [("pong-s0", 15.0), ("pong-s1", 0.0),
                                                                    ("bad", 0.0)]
        assert report["games"][:2] == healthy["games"][:2]  # Breakout, Catch
    else:  # left out: the report is the healthy runs' report, number for number
        assert report["games"] == healthy["games"] and report["aggregates"] == healthy["aggregates"]
        assert report["profile"] == healthy["profile"]
    # `twm report` prints the same report; the damaged run's reason goes to stderr when it is left out
    assert main(["report", str(runs_root), "--reps", "200", "--out", str(tmp_path / "r.json")]) == 0
    out, err = capsys.readouterr()
    assert "| Breakout | 2 | 19.0 |" in out
    assert (f"skipped {runs_root.resolve() / 'bad'}: " in err) is not included
    assert json.loads((tmp_path / "r.json").read_text())["games"] == report["games"]


def test_reports_of_healthy_runs_list_nothing_damaged(runs_root: Path) -> None:
    results, skipped = collect_runs([runs_root])
    assert all(r.damaged is None for r in results)
    meta = build_report(results, reps=0, skipped=skipped)["meta"]
    assert meta["damaged"] == [] and meta["skipped"] == [
        {"run_id": "pong-s2-training", "reason": "no final evaluation yet (run is training)"}]
    assert build_report(results, reps=0)["meta"]["skipped"] == []


def test_unreadable_runs_and_paths_are_reasons_not_errors(tmp_path: Path) -> None:
    dangling = RunDir(tmp_path / "dangling").create()
    dangling.config_path.symlink_to(dangling.path / "nowhere.json")  # still a run: listed as damaged, never dropped
    (tmp_path / "not-utf8-\udcff").mkdir()
    make_run(tmp_path / "not-utf8-\udcff", "pong-\udcfe", "Pong", 0, [1.0, 3.0])
    make_run(tmp_path, "no-status", "Pong", 0, None)
    RunDir(tmp_path / "no-status").status_path.write_bytes(b'{"state": ["training"], "pid": "x"}')
    results, skipped = collect_runs([tmp_path / "dangling", tmp_path / "not-utf8-\udcff", tmp_path / "no-status",
                                     tmp_path / "a-file.txt"])
    assert [(r.run_id, r.score) for r in results] == [("pong-\\udcfe", 2.0)]
    reasons = {s.path.name: s.reason for s in skipped}
    assert reasons["dangling"] == "damaged: dangling/config.json: a dangling symlink"
    assert reasons["a-file.txt"] == "not a directory"
    assert reasons["no-status"].startswith("no final evaluation (state: unknown) (no-status/status.json: ")
    report_markdown(build_report(results, reps=0, skipped=skipped)).encode("utf-8")  # printable, strictly
