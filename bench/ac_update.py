"""One actor-critic training step, split as the trainer runs it: (a) imagination, `select_starts` of the latents
of a world-model batch and `imagine` of M×H steps, then (b) `actor_critic_update` on the imagined batch.

Measures `imagine`, `update` and their sum `total` per repetition, in ms. The latents come from one sampled N×ℓ
batch, encoded as `world_model_update` feeds them to ψ (a context sample and the ℓ sampled steps), outside the
timing; each repetition draws new starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from bench.common import (
    Report,
    add_replay_options,
    build_models,
    make_parser,
    make_replay,
    num_actions,
    repeat,
    setup,
    start_sampler,
    timed,
    to_ms,
)
from twm_core.ac_training import actor_critic_update
from twm_core.imagination import imagine, select_starts


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = make_parser("ac_update", __doc__)
    add_replay_options(parser)
    ctx = setup(parser.parse_args(argv))
    cfg, device, t, a = ctx.cfg, ctx.device, ctx.cfg.train, ctx.cfg.ac
    actions = num_actions(cfg)
    models = build_models(cfg, actions, device)
    replay = make_replay(ctx, actions)
    batch = replay.sample(t.wm_batch_size, t.wm_sequence_length, ctx.generator).to(device)
    with torch.no_grad():  # as world_model_update returns them: sampled latents of steps 0..ℓ (no next obs)
        z = models.wm.obs_model.eval().encode_sample(batch.obs[:, :-1], temperature=1.0)  # (N, ℓ+1, Z)
    sample_start_z = start_sampler(models, replay, ctx.generator, device)
    updates = 0

    def imagine_batch() -> Any:
        start = select_starts(z, batch.actions, batch.rewards, batch.terminated, batch.truncated, a.batch_size,
                              ctx.generator)
        return imagine(models.wm, models.ac, start, a.horizon, sample_start_z, a.discount_threshold)

    def step() -> dict[str, float]:
        nonlocal updates
        traj, imagine_s = timed(device, imagine_batch)
        updates += 1
        _, update_s = timed(device, actor_critic_update, models.ac, models.ac_opt, traj, cfg.env.discount_lambda,
                            updates)
        return {"imagine": imagine_s, "update": update_s, "total": imagine_s + update_s}

    samples = repeat(ctx.args, step)
    report = Report("ac_update", ctx, sizes={
        "imagined_batch": a.batch_size, "horizon": a.horizon, "wm_batch": t.wm_batch_size,
        "sequence_length": t.wm_sequence_length, "num_actions": actions, "replay_size": replay.size})
    report.add("imagine", to_ms(samples["imagine"]), "ms", "select_starts + imagine of M×H steps")
    report.add("update", to_ms(samples["update"]), "ms", "actor_critic_update (critic then actor)")
    report.add("total", to_ms(samples["total"]), "ms", "imagine + update")
    return report.finish()


if __name__ == "__main__":
    main()
