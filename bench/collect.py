"""Environment collection with the policy in the loop, as `Trainer._collect` runs it: per step, `PolicyRunner.act`
on the replay's current stack, `env.step` (reset after a done) and `ReplayBuffer.add` of the tanh reward.

One sample per repetition of `--steps` steps: `collect` in env steps/s, and its parts `policy` and `env` as the mean
ms per step (the rest is the replay and the loop). Real env (`--game`, default Pong; `Catch` needs no ROM).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from bench.common import Report, build_models, make_parser, repeat, setup, timed, to_ms
from twm_core.acting import PolicyRunner
from twm_core.envs import make_env, transform_reward
from twm_core.replay import ReplayBuffer
from twm_core.seeding import derive_seed


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = make_parser("collect", __doc__, repeats=5, warmup=1)
    parser.add_argument("--steps", type=int, default=500, help="env steps per repetition")
    ctx = setup(parser.parse_args(argv))
    cfg, device, steps = ctx.cfg, ctx.device, ctx.args.steps
    if steps < 1:
        raise SystemExit("--steps must be >= 1")
    env = make_env(cfg.env, seed=derive_seed(cfg.seed, "env"))
    actions = int(env.action_space.n)
    models = build_models(cfg, actions, device)
    runner = PolicyRunner(models.wm, models.ac, 1, device)
    replay = ReplayBuffer((ctx.args.warmup + ctx.args.repeats) * steps, cfg.env.frame_stack, cfg.env.frame_size,
                          cfg.replay.temperature)
    obs, _ = env.reset(seed=derive_seed(cfg.seed, "env"))
    replay.reset_obs(obs, stack_reset=True)
    last = (0.0, False)  # transformed reward and done that led to the current observation

    def env_step(action: int) -> tuple[Any, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            obs, info = env.reset()
        return obs, reward, terminated, truncated, info

    def step() -> dict[str, float]:
        nonlocal last
        policy_s = env_s = 0.0
        start = time.perf_counter()
        for _ in range(steps):
            action, seconds = timed(device, runner.act, replay.current_obs()[None].to(device), [last[0]], [last[1]])
            policy_s += seconds
            (obs, reward, terminated, truncated, info), seconds = timed(device, env_step, int(action[0]))
            env_s += seconds
            reward = float(transform_reward(reward, cfg.env))
            replay.add(int(action[0]), reward, terminated, truncated, obs, bool(info.get("stack_reset", False)))
            last = (reward, bool(terminated or truncated))
        elapsed = time.perf_counter() - start
        return {"collect": steps / elapsed, "policy": policy_s / steps, "env": env_s / steps}

    try:
        samples = repeat(ctx.args, step)
    finally:
        env.close()
    report = Report("collect", ctx, sizes={"steps_per_repeat": steps, "num_actions": actions,
                                           "game": cfg.env.game})
    report.add("collect", samples["collect"], "steps/s", "env steps per second with the policy in the loop")
    report.add("policy", to_ms(samples["policy"]), "ms/step", "PolicyRunner.act, mean per step")
    report.add("env", to_ms(samples["env"]), "ms/step", "env.step (+ reset after a done), mean per step")
    return report.finish()


if __name__ == "__main__":
    main()
