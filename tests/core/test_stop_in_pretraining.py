"""A stop signal during pretraining takes effect at the next update, not at the end of pretraining (hours on a CPU
for the paper's budget); the run resumes from its prefill checkpoint and pretrains again, logging each row once."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable

from twm_core.checkpoint import latest_checkpoint, load_checkpoint
from twm_core.presets import make_config
from twm_core.run_dir import RunDir, read_status
from twm_core.trainer import Trainer

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
