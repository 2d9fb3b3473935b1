"""One full `Trainer.train_step()`: `wm_train_steps` world-model updates on sampled N×ℓ batches, imagination of
M×H steps and the actor-critic update, on a Trainer of the preset whose replay is filled directly (no prefill, no
pretraining: the networks keep their initial weights). One sample per call, in ms.

The Trainer lives on a temporary run directory; nothing is written to it (no `run()`, no checkpoint).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import Report, add_replay_options, make_parser, make_replay, repeat, setup, timed, to_ms
from twm_core.run_dir import RunDir
from twm_core.trainer import Trainer


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = make_parser("train_step", __doc__)
    add_replay_options(parser)
    ctx = setup(parser.parse_args(argv))
    cfg, device = ctx.cfg, ctx.device
    with tempfile.TemporaryDirectory(prefix="twm-bench-") as tmp:
        trainer = Trainer(cfg, RunDir(Path(tmp) / "run"), str(device))
        try:
            trainer.replay = make_replay(ctx, trainer.num_actions)

            def step() -> dict[str, float]:
                _, seconds = timed(device, trainer.train_step)
                return {"train_step": seconds}

            samples = repeat(ctx.args, step)
        finally:
            trainer.env.close()
    t, a = cfg.train, cfg.ac
    report = Report("train_step", ctx, sizes={
        "wm_train_steps": t.wm_train_steps, "wm_batch": t.wm_batch_size, "sequence_length": t.wm_sequence_length,
        "imagined_batch": a.batch_size, "horizon": a.horizon, "num_actions": trainer.num_actions,
        "replay_size": trainer.replay.size, "replay_source": ctx.args.replay_source})
    report.add("train_step", to_ms(samples["train_step"]), "ms",
               "Trainer.train_step(): WM update(s), imagine, AC update")
    return report.finish()


if __name__ == "__main__":
    main()
