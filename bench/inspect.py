"""Interactive inspection on a model of `--preset` (untrained weights: the cost does not depend on them), in ms.

Dream sessions (`twm_core.dream`), the engine behind `/api/sessions`, `/imagine` and `/attention`:

- `create_16_cold`: `reset_start` (a new emulator, a reset) + `DreamSession.begin` + 16 policy steps, with the
  real emulator alongside (per-step frames, posteriors, errors);
- `create_16`: the same from a start seen before (`StartCache`: restored into a pooled emulator), as the backend
  serves a second request for a seed;
- `step`: one more step of a 16-step session;
- `attention`: one query token, all layers and heads, not cached;
- `futures_8x16`: 8 futures of 16 steps from the last point;
- `sequential_4x16` / `concurrent_4x16`: four 16-step rollouts (each `create_16`), one after another, and on four
  threads at once (`concurrent_ratio` = concurrent / sequential).

`--legacy` measures the code path this replaced (commit cfa061b) on the same model and seeds: run it from a
checkout of that commit with this file copied into its `bench/` (see the README's Performance section). There,
`create_16` is one `imagine_rollout(horizon=16, compare_real=True)`, `step` re-imagines 17 steps (what the Play page
did per key press), `attention` is `attention_maps(query_step=15)`, `futures_8x16` is eight 16-step imagine calls
(the only way to get eight samples), and concurrent rollouts queue on the registry's inference lock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.common import Context, Report, make_parser, repeat, setup, to_ms
from twm_core.envs import make_env

HORIZON = 16


def _parallel(fn: Callable[[int], object], seeds: list[int]) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(len(seeds)) as pool:
        list(pool.map(fn, seeds))
    return time.perf_counter() - start


def _sequential(fn: Callable[[int], object], seeds: list[int]) -> float:
    start = time.perf_counter()
    for seed in seeds:
        fn(seed)
    return time.perf_counter() - start


def _sessions(ctx: Context, num_actions: int) -> Callable[[int], dict[str, float]]:
    from twm_core.agent import Agent
    from twm_core.dream import DreamSession, StartCache, imagine_futures, query_attention, reset_start

    agent = Agent.build(ctx.cfg, num_actions, ctx.device)
    cache = StartCache(agent)
    fresh_seed = iter(range(10_000, 20_000))

    def rollout(seed: int, start_fn: Callable[[int], Any] = cache.reset_start) -> DreamSession:
        session = DreamSession.begin(agent, start_fn(seed), seed)
        for _ in range(HORIZON):
            session.step()
        return session

    def closed(seed: int) -> None:
        rollout(seed).close()

    def step(i: int) -> dict[str, float]:
        t0 = time.perf_counter()
        rollout(next(fresh_seed), lambda s: reset_start(agent, s)).close()
        t1 = time.perf_counter()
        session = rollout(i % 4)
        t2 = time.perf_counter()
        session.step()
        t3 = time.perf_counter()
        query_attention(session, HORIZON - 1, "a")
        t4 = time.perf_counter()
        imagine_futures(session, 8, HORIZON)
        t5 = time.perf_counter()
        session.close()
        seeds = [4 * i + k for k in range(4)]
        for seed in seeds:  # the starts are cached: both variants do the same work
            closed(seed)
        return {"create_16_cold": t1 - t0, "create_16": t2 - t1, "step": t3 - t2, "attention": t4 - t3,
                "futures_8x16": t5 - t4, "sequential_4x16": _sequential(closed, seeds),
                "concurrent_4x16": _parallel(closed, seeds)}

    return step


def _legacy(ctx: Context, num_actions: int) -> Callable[[int], dict[str, float]]:
    import threading

    import torch

    from backend.registry import LoadedModel  # the commit before dream sessions
    from backend.services import ResetStart
    from backend.services.attention import attention_maps
    from backend.services.rollouts import imagine_rollout
    from twm_core.models.actor_critic import ActorCritic
    from twm_core.run_dir import RunDir
    from twm_core.world_model import WorldModel

    wm = WorldModel(ctx.cfg, num_actions).to(ctx.device).eval().requires_grad_(False)
    ac = ActorCritic(ctx.cfg.ac, num_actions, wm.z_dim, wm.h_dim).to(ctx.device).eval().requires_grad_(False)
    model = LoadedModel(run_id="bench", step=0, run_dir=RunDir("/nonexistent"), config=ctx.cfg,
                        num_actions=num_actions, world_model=wm, actor_critic=ac, device=ctx.device, replay_size=0)
    lock = threading.Lock()  # the registry's inference lock, which every request took

    def rollout(seed: int, horizon: int = HORIZON) -> object:
        with lock, torch.inference_mode():
            return imagine_rollout(model, seed, ResetStart(0), horizon, compare_real=True)

    def step(i: int) -> dict[str, float]:
        t0 = time.perf_counter()
        rollout(10_000 + i)
        t1 = time.perf_counter()
        rollout(i % 4)
        t2 = time.perf_counter()
        rollout(i % 4, HORIZON + 1)
        t3 = time.perf_counter()
        with lock:
            attention_maps(model, i % 4, ResetStart(0), HORIZON - 1)
        t4 = time.perf_counter()
        for k in range(8):
            with lock, torch.inference_mode():
                imagine_rollout(model, 100 + k, ResetStart(0), HORIZON)
        t5 = time.perf_counter()
        seeds = [4 * i + k for k in range(4)]
        return {"create_16_cold": t1 - t0, "create_16": t2 - t1, "step": t3 - t2, "attention": t4 - t3,
                "futures_8x16": t5 - t4, "sequential_4x16": _sequential(rollout, seeds),
                "concurrent_4x16": _parallel(rollout, seeds)}

    return step


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = make_parser("inspect", __doc__, repeats=5, warmup=1, game="Pong")
    parser.add_argument("--legacy", action="store_true", help="measure the pre-session code path (commit cfa061b)")
    ctx = setup(parser.parse_args(argv))
    env = make_env(ctx.cfg.env, seed=0, eval=True)
    num_actions = int(env.action_space.n)
    env.close()
    step_fn = (_legacy if ctx.args.legacy else _sessions)(ctx, num_actions)
    counter = iter(range(1_000_000))
    samples = repeat(ctx.args, lambda: step_fn(next(counter)))
    report = Report("inspect", ctx, sizes={"game": ctx.cfg.env.game, "num_actions": num_actions, "horizon": HORIZON,
                                           "path": "legacy (cfa061b)" if ctx.args.legacy else "dream sessions"})
    for name, values in samples.items():
        report.add(name, to_ms(values), "ms")
    ratios = [c / s for c, s in zip(samples["concurrent_4x16"], samples["sequential_4x16"], strict=True)]
    report.add("concurrent_ratio", ratios, "x", "concurrent_4x16 / sequential_4x16 (same round)")
    return report.finish()


if __name__ == "__main__":
    main()
