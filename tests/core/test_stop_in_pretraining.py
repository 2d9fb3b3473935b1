"""A stop signal during pretraining takes effect at the next update, not at the end of pretraining (hours on a CPU
for the paper's budget); the run resumes from its prefill checkpoint and pretrains again, logging each row once.
A stop during the prefill checkpoints the steps taken, so the resumed run continues the prefill from there."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable

from twm_core.checkpoint import latest_checkpoint, load_checkpoint
from twm_core.presets import make_config
from twm_core.run_dir import RunDir, read_status
from twm_core.trainer import Trainer

PREFILL_STOP_AT = 37  # env steps of the prefill before the signal arrives

STOP_AT = 5  # pretraining updates before the signal arrives


class SignalledInPretraining(Trainer):
    """A trainer that receives SIGTERM (through its own handler) at its STOP_AT-th pretraining update."""

    updates_after_stop = 0
    updates = 0

    def _stoppable(self, progress: Callable[[float], None]) -> Callable[[float], None]:
        inner = super()._stoppable(progress)

        def call(frames: float) -> None:
            cls = type(self)
            cls.updates += 1
            if self.stopped:
                cls.updates_after_stop += 1
            if cls.updates == STOP_AT:
                self._request_stop(signal.SIGTERM, None)
            inner(frames)
        return call


def test_a_stop_in_pretraining_is_prompt_and_the_resume_pretrains_again(tmp_path):
    cfg = make_config("debug", "Catch", seed=0, overrides={
        "train.total_steps": 140, "train.pretrain_budget": 6000, "train.eval_episodes": 0,
        "train.final_eval_episodes": 0, "train.checkpoint_every": 100})
    run_dir = RunDir(tmp_path / "run")
    trainer = SignalledInPretraining(cfg, run_dir, "cpu")
    assert trainer.run() == {}
    assert SignalledInPretraining.updates == STOP_AT and SignalledInPretraining.updates_after_stop == 0
    assert read_status(run_dir)["state"] == "cancelled"
    step, path = latest_checkpoint(run_dir)
    assert step == cfg.replay.prefill and load_checkpoint(path)["counters"]["phase"] == "pretrain"

    Trainer.resume(run_dir, "cpu").run()
    assert read_status(run_dir)["state"] == "finished"
    rows = [json.loads(line) for line in run_dir.metrics_path.read_text().splitlines()]
    rows = [r for r in rows if "pretrain/updates" in r]
    updates = [r["pretrain/updates"] for r in rows]
    assert updates == sorted(set(updates)), "the stopped attempt's pretraining rows were cut when it resumed"
    assert updates[-1] > STOP_AT


class SignalledInPrefill(Trainer):
    """A trainer that receives SIGTERM (through its own handler) after PREFILL_STOP_AT prefill steps."""

    def _env_step(self, action: int) -> None:
        super()._env_step(action)
        if self.counters.phase == "prefill" and self.replay.size == PREFILL_STOP_AT:
            self._request_stop(signal.SIGTERM, None)


def test_a_stop_in_the_prefill_checkpoints_it_and_the_resume_continues_it(tmp_path):
    cfg = make_config("debug", "Catch", seed=0, overrides={
        "train.total_steps": 140, "train.eval_episodes": 0, "train.final_eval_episodes": 0})
    assert cfg.replay.prefill > PREFILL_STOP_AT
    run_dir = RunDir(tmp_path / "run")
    assert SignalledInPrefill(cfg, run_dir, "cpu").run() == {}
    assert read_status(run_dir)["state"] == "cancelled"
    step, path = latest_checkpoint(run_dir)
    assert step == PREFILL_STOP_AT and load_checkpoint(path)["counters"]["phase"] == "prefill"

    resumed = Trainer.resume(run_dir, "cpu")
    assert resumed.replay.size == PREFILL_STOP_AT
    resumed.run()
    assert read_status(run_dir)["state"] == "finished"
    assert resumed.replay.size == cfg.train.total_steps
    assert resumed.counters.interrupted_rows == [PREFILL_STOP_AT - 1]  # the cut episode, marked truncated
