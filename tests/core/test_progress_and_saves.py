"""A debug run's progress reporting (pretraining rows, status.json stages and ETAs) and its saves (checkpoints
aligned with evaluations, retention, snapshots, resume from the newest full checkpoint); and that neither the
reporting nor the save cadence changes what the run computes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from twm_core import recorder
from twm_core.agent import load_agent
from twm_core.checkpoint import latest_checkpoint, load_checkpoint, scan_checkpoints
from twm_core.presets import make_config
from twm_core.recorder import PRETRAIN_MIN_ROWS, StageClock
from twm_core.run_dir import RunDir, read_run_status, read_status
from twm_core.trainer import Trainer

PREFILL, TOTAL = 100, 180
OVERRIDES = {"replay.prefill": PREFILL, "train.total_steps": TOTAL, "train.pretrain_budget": 3000,
             "train.eval_every": 20, "train.eval_episodes": 1, "train.final_eval_episodes": 2,
             "train.checkpoint_every": 20, "train.keep_checkpoints": 1, "train.keep_every": 40,
             "train.snapshots": 4}
"""Evaluations and checkpoints every 20 steps from the prefill: 120, 140, 160 (and the final one at 180)."""
STAGE_FIELDS = ("stage", "stage_done", "stage_total", "stage_unit", "stage_started_at", "eta_s", "run_eta_s")
UNITS = {"prefill": "env steps", "pretrain/obs": "frames", "pretrain/dyn": "frames", "pretrain/ac": "frames",
         "train": "env steps", "eval": "episodes", "final_eval": "episodes"}


def _digest(trainer: Trainer) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for p in (*trainer.wm.parameters(), *trainer.ac.parameters())])


class RecordingTrainer(Trainer):
    """Remembers the weights at each evaluation and each full checkpoint, and every status.json written."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, on_progress=self._seen, **kwargs)
        self.evaluated: dict[int, torch.Tensor] = {}
        self.saved: list[tuple[int, str, int, torch.Tensor]] = []  # step, phase, last_eval, weights
        self.statuses: list[dict[str, Any]] = []

    def _seen(self, step: int, total: int, phase: str) -> None:
        self.statuses.append(read_status(self.run_dir) or {})

    def _evaluate(self, final: bool) -> dict[str, float]:
        self.evaluated.setdefault(self.replay.size, _digest(self))
        return super()._evaluate(final)

    def save_checkpoint(self) -> None:
        c = self.counters
        self.saved.append((self.replay.size, c.phase, c.last_eval, _digest(self)))
        super().save_checkpoint()


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _comparable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows without wall-clock values and without the pretraining rows (whose cadence is what varies)."""
    return [{k: v for k, v in row.items() if k != "time" and not k.startswith("perf/")}
            for row in rows if not any(k.startswith("pretrain/") for k in row)]


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> tuple[RecordingTrainer, RunDir]:
    """The reference run, with a status write at every bit of progress (no time limit between writes)."""
    rd = RunDir(tmp_path_factory.mktemp("traced") / "run")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(recorder, "STATUS_INTERVAL_S", 0.0)
        trainer = RecordingTrainer(make_config("debug", "Catch", seed=3, overrides=OVERRIDES), rd, "cpu")
        trainer.run()
    return trainer, rd


# ------------------------------------------------------------------------------------------------ progress
def test_pretraining_writes_rows_as_it_goes(traced: tuple[RecordingTrainer, RunDir]) -> None:
    _, rd = traced
    rows = [r for r in _rows(rd.metrics_path) if any(k.startswith("pretrain/") for k in r)]
    assert {r["step"] for r in rows} == {PREFILL}, "pretraining rows are logged at the prefill's env step"
    frames = [r["pretrain/frames"] for r in rows]
    updates = [r["pretrain/updates"] for r in rows]
    assert frames == sorted(set(frames)) and updates == sorted(set(updates)), "the x of a pretraining curve"
    obs = [r for r in rows if "pretrain/wm/dec_loss" in r]
    ac = [r for r in rows if "pretrain/ac/critic_loss" in r]
    dyn = [r for r in rows if any(k.startswith("pretrain/wm/") for k in r) and r not in obs]
    before = 0
    for stage in (obs, dyn, ac):
        updates_in_stage = stage[-1]["pretrain/updates"] - before
        before = stage[-1]["pretrain/updates"]
        # a row at the first update past each 1/20 of the stage's budget (one update may pass two of them)
        assert min(PRETRAIN_MIN_ROWS, updates_in_stage) // 2 <= len(stage) <= PRETRAIN_MIN_ROWS + 1
    assert max(r["pretrain/frames"] for r in obs) < min(r["pretrain/frames"] for r in dyn)
    assert max(r["pretrain/frames"] for r in dyn) < min(r["pretrain/frames"] for r in ac)
    budget = OVERRIDES["train.pretrain_budget"]
    assert frames[-1] >= budget * (0.6 + 0.3 + 0.7)  # every stage used its whole budget (the last batch may pass it)


def test_status_reports_each_stage_with_its_progress_and_estimates(traced: tuple[RecordingTrainer, RunDir]) -> None:
    trainer, rd = traced
    statuses = [s for s in trainer.statuses if s.get("stage") is not None]
    assert all(set(STAGE_FIELDS) <= set(s) for s in trainer.statuses), "every write carries every stage field"
    order = [s["stage"] for i, s in enumerate(statuses) if i == 0 or s["stage"] != statuses[i - 1]["stage"]]
    assert order == ["prefill", "pretrain/obs", "pretrain/dyn", "pretrain/ac", "eval", "train", "eval", "train",
                     "eval", "train", "eval", "train", "final_eval"]
    for s in statuses:
        assert s["stage_unit"] == UNITS[s["stage"]], s
        assert s["stage_started_at"] <= s["updated"]
        for key in ("eta_s", "run_eta_s"):
            assert s[key] is None or s[key] >= 0, s
        if s["stage_total"] is not None:
            assert 0 <= s["stage_done"], s
    by_stage: dict[str, list[dict[str, Any]]] = {}
    for s in statuses:
        by_stage.setdefault(s["stage"], []).append(s)
    train = by_stage["train"]
    assert {s["stage_started_at"] for s in train} == {train[0]["stage_started_at"]}, "evaluations keep train's clock"
    assert train[0]["stage_total"] == TOTAL - PREFILL and train[-1]["stage_done"] == TOTAL - PREFILL
    dones = [s["stage_done"] for s in train]
    assert dones == sorted(dones)
    assert any(s["eta_s"] is not None for s in train) and any(s["run_eta_s"] is not None for s in train)
    for stage in ("pretrain/obs", "pretrain/dyn", "pretrain/ac"):
        seen = by_stage[stage]
        assert [s["stage_done"] for s in seen] == sorted(s["stage_done"] for s in seen)
        assert seen[-1]["stage_done"] >= seen[-1]["stage_total"] > 0
        assert seen[0]["eta_s"] is None and any(s["eta_s"] is not None for s in seen)
        assert all(s["run_eta_s"] is None for s in seen), "no honest run estimate before training is measured"
    assert all(s["run_eta_s"] is None for s in by_stage["prefill"])
    assert by_stage["final_eval"][0]["stage_total"] == 2
    final = read_run_status(rd)
    assert final is not None and final.get("state") == "finished"
    progress = final.progress
    assert progress is not None and progress.stage == "final_eval" and progress.done == progress.total == 2
    assert progress.eta_s == 0 and progress.run_eta_s == 0


def test_stage_clock_estimates_from_this_attempts_rate() -> None:
    clock = StageClock("train", "env steps", total=1000, started_at=100.0, start_done=400, done=400)
    assert clock.eta(110.0) is None, "nothing done in this attempt yet: no rate"
    clock.done = 500  # 100 steps in 10 s
    assert clock.eta(110.0) == pytest.approx(50.0)
    clock.done = 1000
    assert clock.eta(111.0) == 0.0
    assert StageClock("eval", "episodes", None, 0.0, 0, 3).eta(5.0) is None


# ------------------------------------------------------------------------------------------------ saves
def test_checkpoints_fall_on_the_evaluation_steps_with_the_evaluated_weights(
        traced: tuple[RecordingTrainer, RunDir]) -> None:
    trainer, rd = traced
    in_loop = [(step, last_eval, weights) for step, phase, last_eval, weights in trainer.saved
               if phase == "train" and step > PREFILL]
    evals = sorted({r["step"] for r in _rows(rd.scores_path) if r["kind"] == "eval"})
    assert evals == [100, 120, 140, 160]
    assert [step for step, _, _ in in_loop] == [120, 140, 160, 180]  # 180: before the final evaluation
    for step, last_eval, weights in in_loop:
        if step < TOTAL:  # the one at the end is saved before the final evaluation (a kill in it resumes there)
            assert last_eval == step, "the checkpoint is saved after the evaluation of its step"
        evaluated = trainer.evaluated[step]  # the final evaluation's for 180
        assert torch.equal(weights, evaluated), f"step {step}: not the weights that were evaluated"


def test_retention_keeps_the_newest_the_keep_every_multiples_and_the_snapshots(
        traced: tuple[RecordingTrainer, RunDir]) -> None:
    _, rd = traced
    files = [(c.step, c.kind) for c in scan_checkpoints(rd)[0]]
    # keep_checkpoints=1: the newest (180); keep_every=40: 120 and 160; snapshots=4: 100·1.8^(i/3) rounded
    assert files == [(100, "snapshot"), (120, "full"), (122, "snapshot"), (148, "snapshot"), (160, "full"),
                     (180, "full"), (180, "snapshot")]
    snapshot = load_checkpoint(rd.ckpt_dir / "snap_000000148.pt")
    assert snapshot["kind"] == "snapshot" and "optimizers" not in snapshot and snapshot["step"] == 148
    agent = load_agent(rd.ckpt_dir / "snap_000000148.pt", run_dir=rd)
    assert agent.step == 148
    final = load_checkpoint(rd.ckpt_dir / "snap_000000180.pt")
    full = load_checkpoint(rd.ckpt_dir / "step_000000180.pt")
    for name, value in final["world_model"].items():
        assert torch.equal(value, full["world_model"][name]), "the last snapshot holds the final agent"


def test_a_run_whose_newest_file_is_a_snapshot_resumes_from_the_newest_full_checkpoint(
        traced: tuple[RecordingTrainer, RunDir], tmp_path: Path) -> None:
    _, src = traced
    rd = RunDir(tmp_path / "run")
    shutil.copytree(src.path, rd.path)
    (rd.ckpt_dir / "step_000000180.pt").unlink()  # as if killed during the final evaluation's save
    assert latest_checkpoint(rd) == (160, rd.ckpt_dir / "step_000000160.pt")
    trainer = Trainer.resume(rd, "cpu")
    assert trainer.replay.size == 160 and trainer.counters.phase == "train"
    trainer.run()
    state = load_checkpoint(latest_checkpoint(rd)[1])
    assert state["step"] == TOTAL and state["counters"]["phase"] == "finished" and state["counters"]["resumes"] == 1
    steps = [r["step"] for r in _rows(rd.metrics_path) if "replay/size" in r]
    assert steps == sorted(set(steps)) and steps[-1] == TOTAL
    assert [c.kind for c in scan_checkpoints(rd)[0]].count("snapshot") == 4


# ------------------------------------------------------------------------------------------------ invariance
def test_reporting_and_save_cadence_do_not_change_the_training(traced: tuple[RecordingTrainer, RunDir],
                                                               tmp_path: Path) -> None:
    """The same run with (nearly) no progress reporting and (nearly) no saves computes exactly the same."""
    _, reference = traced
    rd = RunDir(tmp_path / "quiet")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(recorder, "STATUS_INTERVAL_S", 1e9)
        mp.setattr(recorder, "PRETRAIN_MIN_ROWS", 1)
        overrides = {**OVERRIDES, "train.checkpoint_every": 1000, "train.keep_checkpoints": 5,
                     "train.keep_every": 0, "train.snapshots": 0}
        Trainer(make_config("debug", "Catch", seed=3, overrides=overrides), rd, "cpu").run()
    assert [c.step for c in scan_checkpoints(rd)[0]] == [100, 180]
    a = load_checkpoint(reference.ckpt_dir / "step_000000180.pt")
    b = load_checkpoint(rd.ckpt_dir / "step_000000180.pt")
    for part in ("world_model", "actor_critic"):
        for name, value in a[part].items():
            assert torch.equal(value, b[part][name]), f"{part}.{name}"
    for name, opt in a["optimizers"].items():
        for index, state in opt["state"].items():
            for key, value in state.items():
                assert torch.equal(torch.as_tensor(value), torch.as_tensor(b["optimizers"][name]["state"][index][key]))
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    assert torch.equal(a["rng"]["generators"]["replay"], b["rng"]["generators"]["replay"])
    assert {k: v for k, v in a["counters"].items() if k != "last_checkpoint"} == \
        {k: v for k, v in b["counters"].items() if k != "last_checkpoint"}
    assert _comparable(_rows(reference.metrics_path)) == _comparable(_rows(rd.metrics_path))
    quiet_pretrain = [r for r in _rows(rd.metrics_path) if "pretrain/frames" in r]
    assert len(quiet_pretrain) < len([r for r in _rows(reference.metrics_path) if "pretrain/frames" in r])
