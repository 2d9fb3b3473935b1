"""One world-model update (`world_model_update`, ψ then φ) on a sampled N×ℓ batch of the preset.

Measures `update` (the update alone) and `sample` (balanced replay sampling, the stacked-frame gather and the move
to the device), each in ms; a fresh batch is sampled for every repetition.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.common import (
    Report,
    add_replay_options,
    build_models,
    make_parser,
    make_replay,
    num_actions,
    repeat,
    setup,
    timed,
    to_ms,
)
from twm_core.wm_training import world_model_update


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = make_parser("wm_update", __doc__)
    add_replay_options(parser)
    ctx = setup(parser.parse_args(argv))
    cfg, device, t = ctx.cfg, ctx.device, ctx.cfg.train
    actions = num_actions(cfg)
    models = build_models(cfg, actions, device)
    replay = make_replay(ctx, actions)

    def step() -> dict[str, float]:
        batch, sample_s = timed(device, lambda: replay.sample(t.wm_batch_size, t.wm_sequence_length,
                                                              ctx.generator).to(device))
        _, update_s = timed(device, world_model_update, models.wm, models.wm_opt, batch)
        return {"sample": sample_s, "update": update_s}

    samples = repeat(ctx.args, step)
    report = Report("wm_update", ctx, sizes={
        "batch": t.wm_batch_size, "sequence_length": t.wm_sequence_length, "num_actions": actions,
        "replay_size": replay.size, "replay_source": ctx.args.replay_source})
    report.add("update", to_ms(samples["update"]), "ms", "world_model_update on one N×ℓ batch")
    report.add("sample", to_ms(samples["sample"]), "ms", "replay.sample(N, ℓ) + .to(device)")
    return report.finish()


if __name__ == "__main__":
    main()
