"""Where a hot path spends its time (`torch.profiler`) and how much arithmetic it does (`FlopCounterMode`).

`--path wm_update` (one `world_model_update`), `ac_update` (imagination of M×H steps, then `actor_critic_update`)
or `policy` (one `PolicyRunner.act`). The path runs `--warmup` times, then `--repeats` times under the profiler
and once under the FLOP counter. Printed: the time per repetition split by model part (forward hooks on the
top-level modules open a profiler scope each, so a part's row is its forward, and `backward`/`optimizer` are
their own rows), the top operators by self CPU time, and the FLOPs against this machine's measured matmul rate
(`floor`: the time the FLOPs would take at that rate, the bound no exact CPU path can beat).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile, record_function
from torch.utils.flop_counter import FlopCounterMode

from bench.common import (
    Report,
    add_replay_options,
    build_models,
    make_parser,
    make_replay,
    num_actions,
    setup,
    start_sampler,
)
from twm_core.ac_training import actor_critic_update
from twm_core.acting import PolicyRunner
from twm_core.imagination import imagine, select_starts
from twm_core.wm_training import world_model_update


@contextmanager
def part_scopes(modules: dict[str, nn.Module]) -> Iterator[None]:
    """A profiler scope `part:<name>` around each forward of the named modules (outermost call only)."""
    handles, depth = [], {}

    def enter(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any) -> None:
            depth[name] = depth.get(name, 0) + 1
            if depth[name] == 1:
                module._bench_scope = record_function(f"part:{name}")  # type: ignore[assignment]
                module._bench_scope.__enter__()
        return hook

    def leave(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            depth[name] -= 1
            if depth[name] == 0:
                module._bench_scope.__exit__(None, None, None)
        return hook

    for name, module in modules.items():
        handles += [module.register_forward_pre_hook(enter(name)), module.register_forward_hook(leave(name))]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def matmul_gflops(threads: int, size: int = 1024, repeats: int = 10) -> float:
    """The float32 matmul rate of this process, in GFLOP/s (the practical peak the floor is measured against)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def build_path(ctx: Any) -> tuple[Callable[[], None], dict[str, nn.Module]]:
    """The chosen hot path as a no-argument step, and the modules whose forwards are scoped."""
    cfg, device, t, a = ctx.cfg, ctx.device, ctx.cfg.train, ctx.cfg.ac
    actions = num_actions(cfg)
    models = build_models(cfg, actions, device)
    obs, dyn = models.wm.obs_model, models.wm.dyn_model
    modules: dict[str, nn.Module] = {
        "encoder cnn": obs.encoder_cnn, "encoder mlp": obs.encoder_mlp, "decoder mlp": obs.decoder_mlp,
        "decoder cnn": obs.decoder_cnn, "transformer": dyn.transformer, "z head": dyn.z_head,
        "reward head": dyn.reward_head, "discount head": dyn.discount_head, "actor": models.ac.actor,
        "critic": models.ac.critic}
    if ctx.args.path == "policy":
        runner = PolicyRunner(models.wm, models.ac, 1, device)
        rng = np.random.default_rng(cfg.seed)
        shape = (1, cfg.env.frame_stack, cfg.env.frame_size, cfg.env.frame_size)
        return lambda: runner.act(rng.integers(0, 256, shape, dtype=np.uint8), [0.0], [False]), modules
    replay = make_replay(ctx, actions)
    if ctx.args.path == "wm_update":
        def wm_step() -> None:
            batch = replay.sample(t.wm_batch_size, t.wm_sequence_length, ctx.generator).to(device)
            with record_function("part:world_model_update"):
                world_model_update(models.wm, models.wm_opt, batch)
        return wm_step, modules
    batch = replay.sample(t.wm_batch_size, t.wm_sequence_length, ctx.generator).to(device)
    with torch.no_grad():
        z = models.wm.obs_model.eval().encode_sample(batch.obs[:, :-1], temperature=1.0)  # (N, ℓ+1, Z)
    sample_start_z = start_sampler(models, replay, ctx.generator, device)
    updates = [0]

    def ac_step() -> None:
        with record_function("part:imagine"):
            start = select_starts(z, batch.actions, batch.rewards, batch.terminated, batch.truncated, a.batch_size,
                                  ctx.generator)
            traj = imagine(models.wm, models.ac, start, a.horizon, sample_start_z, a.discount_threshold)
        updates[0] += 1
        with record_function("part:actor_critic_update"):
            actor_critic_update(models.ac, models.ac_opt, traj, cfg.env.discount_lambda, updates[0])
    return ac_step, modules


def _scope_rows(events: Any, repeats: int) -> dict[str, float]:
    """ms per repetition of each `part:` scope and of autograd's backward and the optimizers' steps."""
    rows: dict[str, float] = {}
    for e in events:
        key = e.key
        if key.startswith("part:"):
            rows[key[5:]] = e.cpu_time_total / 1e3 / repeats
        elif key.startswith("Optimizer.step"):
            rows["optimizer"] = rows.get("optimizer", 0.0) + e.cpu_time_total / 1e3 / repeats
    backward = sum(e.self_cpu_time_total for e in events if "Backward" in e.key) / 1e3 / repeats
    rows["backward (self time of *Backward ops)"] = backward
    return rows


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = make_parser("profile", __doc__, repeats=2, warmup=1)
    parser.add_argument("--path", choices=("wm_update", "ac_update", "policy"), default="wm_update")
    parser.add_argument("--top", type=int, default=15, help="operators listed")
    add_replay_options(parser)
    ctx = setup(parser.parse_args(argv))
    step, modules = build_path(ctx)
    for _ in range(ctx.args.warmup):
        step()
    with part_scopes(modules), profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        for _ in range(ctx.args.repeats):
            step()
        wall_ms = (time.perf_counter() - start) * 1e3 / ctx.args.repeats
    with FlopCounterMode(display=False) as flops:
        step()
    total_flops = flops.get_total_flops()
    rate = matmul_gflops(ctx.args.threads)
    events = prof.key_averages()
    ops = sorted((e for e in events if not e.key.startswith(("part:", "Optimizer.", "ProfilerStep"))),
                 key=lambda e: -e.self_cpu_time_total)[: ctx.args.top]
    report = Report("profile", ctx, sizes={"path": ctx.args.path, "num_actions": num_actions(ctx.cfg)})
    report.add("wall", [wall_ms], "ms", "one repetition, under the profiler")
    for name, ms in _scope_rows(events, ctx.args.repeats).items():
        report.add(f"part {name}", [ms], "ms", "CPU time of the scope per repetition (children included)")
    for e in ops:
        report.add(f"op {e.key}", [e.self_cpu_time_total / 1e3 / ctx.args.repeats], "ms",
                   f"self CPU time per repetition ({e.count // ctx.args.repeats} calls)")
    report.add("gflop", [total_flops / 1e9], "GFLOP", "FlopCounterMode, one repetition")
    report.add("matmul rate", [rate], "GFLOP/s", f"fp32 1024² matmul, {ctx.args.threads} thread(s)")
    report.add("floor", [total_flops / (rate * 1e9) * 1e3], "ms", "the FLOPs at the matmul rate")
    return report.finish()


if __name__ == "__main__":
    main()
