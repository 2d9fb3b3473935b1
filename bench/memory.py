"""Memory of a full replay buffer and of one training step at the preset's sizes.

Replay: a real `ReplayBuffer` of `--replay-size` steps (default: the preset's capacity, 100,000 at `atari100k`) is
filled with random 64×64 frames through `reset_obs`/`add` (generated in chunks, so no second copy of the frames is
held), then `--repeats` world-model batches are sampled (`replay.sample(N, ℓ)`, as the trainer does). Measured:
`replay_bytes` (MB) and `bytes_per_step` of the buffer's storage (`ReplayBuffer.nbytes`), the process's
`rss_before` the buffer existed, `rss` after filling and sampling (MB, psutil) and `peak_rss` (MB,
getrusage ru_maxrss), and `sample` (ms per batch).

GPU: with a CUDA device, `gpu_train_step` is `torch.cuda.max_memory_allocated` (MB) over one training step of
fresh models (world-model update, imagination of M×H, actor-critic update), after one warmup step. On a CPU it is
skipped with a message.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import psutil
import torch

from bench.common import Report, build_models, make_parser, num_actions, setup, start_sampler, timed, to_ms
from twm_core.ac_training import actor_critic_update
from twm_core.config import TWMConfig
from twm_core.envs import transform_reward
from twm_core.imagination import imagine, select_starts
from twm_core.replay import ReplayBuffer
from twm_core.seeding import derive_seed
from twm_core.wm_training import world_model_update

MB = 2**20


def current_rss() -> float:
    """Resident set size now, in bytes."""
    return float(psutil.Process().memory_info().rss)


def peak_rss() -> float:
    """Peak resident set size of the process so far, in bytes (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0


def fill_replay(cfg: TWMConfig, size: int, actions: int, seed: int, chunk: int = 4096) -> ReplayBuffer:
    """A real buffer of `size` steps of random frames, random actions, tanh rewards in {-1, 0, 1} and ~1.2% dones,
    added one step at a time with stacks that follow the buffer's stack rule (as `bench.common.synthetic_replay`,
    but drawing the frames `chunk` at a time so that the peak RSS is the buffer's, not a second copy of it)."""
    g = torch.Generator().manual_seed(derive_seed(seed, "bench-memory"))
    F, S = cfg.env.frame_stack, cfg.env.frame_size
    buf = ReplayBuffer(size, F, S, cfg.replay.temperature)
    stack = torch.randint(0, 256, (S, S), dtype=torch.uint8, generator=g).expand(F, S, S).clone()  # (F, S, S)
    buf.reset_obs(stack, stack_reset=True)
    for begin in range(0, size, chunk):
        n = min(chunk, size - begin)
        frames = torch.randint(0, 256, (n, 1, S, S), dtype=torch.uint8, generator=g)  # (n, 1, S, S)
        acts = torch.randint(actions, (n,), generator=g).tolist()
        raw = torch.multinomial(torch.tensor([0.05, 0.9, 0.05]), n, replacement=True, generator=g) - 1
        rewards = np.asarray(transform_reward(raw.double().numpy(), cfg.env)).tolist()
        u = torch.rand(n, generator=g)
        terminated, truncated = (u < 0.01).tolist(), ((u >= 0.01) & (u < 0.012)).tolist()
        for i in range(n):
            done = terminated[i] or truncated[i]
            stack = frames[i].expand(F, S, S).clone() if done else torch.cat([stack[1:], frames[i]])
            buf.add(acts[i], rewards[i], terminated[i], truncated[i], stack, next_stack_reset=done)
    return buf


def gpu_train_step_mb(cfg: TWMConfig, replay: ReplayBuffer, actions: int, device: torch.device,
                      generator: torch.Generator) -> float:
    """Peak CUDA memory (MB) of one training step (WM update, imagination, AC update), after a warmup step."""
    models = build_models(cfg, actions, device)
    sample_start_z = start_sampler(models, replay, generator, device)
    t, a = cfg.train, cfg.ac

    def train_step(update: int) -> None:
        batch = replay.sample(t.wm_batch_size, t.wm_sequence_length, generator).to(device)
        z, _ = world_model_update(models.wm, models.wm_opt, batch)
        start = select_starts(z, batch.actions, batch.rewards, batch.terminated, batch.truncated, a.batch_size,
                              generator)
        traj = imagine(models.wm, models.ac, start, a.horizon, sample_start_z, a.discount_threshold)
        actor_critic_update(models.ac, models.ac_opt, traj, cfg.env.discount_lambda, update)

    train_step(1)  # optimizer states and allocator caches exist after the first step, as in training
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    train_step(2)
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) / MB


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = make_parser("memory", __doc__, repeats=5, warmup=1)
    parser.add_argument("--replay-size", type=int, default=None,
                        help="steps in the replay buffer (default: the preset's replay.capacity)")
    ctx = setup(parser.parse_args(argv))
    cfg, device, args, t = ctx.cfg, ctx.device, ctx.args, ctx.cfg.train
    size = args.replay_size or cfg.replay.capacity
    if size - t.wm_sequence_length + 1 < t.wm_batch_size * t.wm_sequence_length:
        raise SystemExit(f"--replay-size {size} is too small for a batch of {t.wm_batch_size}×"
                         f"{t.wm_sequence_length}")
    actions = num_actions(cfg)

    rss_before = current_rss()
    start = time.perf_counter()
    replay = fill_replay(cfg, size, actions, cfg.seed)
    fill_s = time.perf_counter() - start
    samples: dict[str, list[float]] = {}
    for i in range(args.warmup + args.repeats):
        _, seconds = timed(device, lambda: replay.sample(t.wm_batch_size, t.wm_sequence_length,
                                                         ctx.generator).to(device))
        if i >= args.warmup:
            for key, value in (("sample", seconds), ("rss", current_rss() / MB), ("peak_rss", peak_rss() / MB)):
                samples.setdefault(key, []).append(value)
    nbytes = replay.nbytes()

    gpu_mb = None
    if device.type == "cuda":
        gpu_mb = gpu_train_step_mb(cfg, replay, actions, device, ctx.generator)
    else:
        print("gpu_train_step: skipped (no CUDA device; run with --device cuda on a GPU machine)")

    report = Report("memory", ctx, sizes={
        "replay_size": replay.size, "frame_size": cfg.env.frame_size, "frame_stack": cfg.env.frame_stack,
        "batch": t.wm_batch_size, "sequence_length": t.wm_sequence_length, "num_actions": actions,
        "fill_seconds": round(fill_s, 2)})
    n = args.repeats
    report.add("replay_bytes", [nbytes / MB] * n, "MB", "ReplayBuffer.nbytes(): its preallocated storage")
    report.add("bytes_per_step", [nbytes / replay.capacity] * n, "B", "storage per step (one frame + row data)")
    report.add("rss_before", [rss_before / MB] * n, "MB", "process RSS before the buffer was created")
    report.add("rss", samples["rss"], "MB", "process RSS after filling and sampling")
    report.add("peak_rss", samples["peak_rss"], "MB", "peak process RSS (getrusage ru_maxrss)")
    report.add("sample", to_ms(samples["sample"]), "ms", "replay.sample(N, ℓ) + .to(device) on the full buffer")
    if gpu_mb is not None:
        report.add("gpu_train_step", [gpu_mb], "MB",
                   "torch.cuda.max_memory_allocated over one training step (after a warmup step)")
    return report.finish()


if __name__ == "__main__":
    main()
