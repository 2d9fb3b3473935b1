"""Latency of one policy action on a single observation: `PolicyRunner.act` on one (F, 64, 64) uint8 stack, as the
trainer's collection calls it (encode at temperature 0, then sample the actor; with `ac.input_h` the dynamics
model's incremental step too). One sample per call, in ms; the observation changes every call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from bench.common import Report, build_models, make_parser, num_actions, repeat, setup, timed, to_ms
from twm_core.acting import PolicyRunner


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = make_parser("policy", __doc__, repeats=200, warmup=10)
    ctx = setup(parser.parse_args(argv))
    cfg, device = ctx.cfg, ctx.device
    actions = num_actions(cfg)
    models = build_models(cfg, actions, device)
    runner = PolicyRunner(models.wm, models.ac, 1, device)
    rng = np.random.default_rng(cfg.seed)
    shape = (1, cfg.env.frame_stack, cfg.env.frame_size, cfg.env.frame_size)

    def step() -> dict[str, float]:
        obs = rng.integers(0, 256, shape, dtype=np.uint8)  # (1, F, 64, 64)
        _, seconds = timed(device, runner.act, obs, [0.0], [False])
        return {"act": seconds}

    samples = repeat(ctx.args, step)
    report = Report("policy", ctx, sizes={"observation": list(shape), "num_actions": actions,
                                          "input_h": cfg.ac.input_h})
    report.add("act", to_ms(samples["act"]), "ms", "PolicyRunner.act on one observation (to an int action)")
    return report.finish()


if __name__ == "__main__":
    main()
