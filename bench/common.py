"""Shared benchmark machinery: arguments, timing, statistics, the table, the JSON record, models and replay data.

Every script follows one shape (see `bench/wm_update.py`, the shortest):

    parser = make_parser("wm_update", __doc__)            # common options (+ the script's own)
    ctx = setup(parser.parse_args(argv))                  # threads, seeds, config, device
    samples = repeat(ctx.args, step)                      # `step()` returns {phase: seconds}; warmup dropped
    report = Report("wm_update", ctx, sizes={...})
    report.add("update", samples["update"], unit="ms")
    return report.finish()                                # prints the table, writes --json, returns the record

Timings are wall-clock (`time.perf_counter`) around a call, with `torch.cuda.synchronize()` on both sides on CUDA,
so queued kernels are counted in the phase that launched them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from twm_core.ac_training import ActorCriticOptimizers
from twm_core.allocator import keep_freed_memory
from twm_core.config import TWMConfig
from twm_core.config_parsing import parse_assignments
from twm_core.envs import make_env, transform_reward
from twm_core.models.actor_critic import ActorCritic
from twm_core.presets import PRESETS, make_config
from twm_core.replay import ReplayBuffer
from twm_core.seeding import derive_seed, seed_everything
from twm_core.trainer import resolve_device
from twm_core.wm_training import WorldModelOptimizers
from twm_core.world_model import WorldModel

T = TypeVar("T")
REPO_ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------------------ arguments
def make_parser(name: str, description: str | None, repeats: int = 5, warmup: int = 1,
                game: str = "Pong") -> argparse.ArgumentParser:
    """The options every benchmark takes; scripts add their own to the returned parser."""
    parser = argparse.ArgumentParser(prog=f"python -m bench.{name}", description=description,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="atari100k", help="config preset")
    parser.add_argument("--game", default=game, help="game (sets the number of actions; Catch needs no ROM)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (torch.set_num_threads)")
    parser.add_argument("--repeats", type=int, default=repeats, help="timed repetitions (samples)")
    parser.add_argument("--warmup", type=int, default=warmup, help="untimed repetitions first")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", "--override", dest="set", action="append", default=[], metavar="KEY=VALUE",
                        help="dotted config override, e.g. dyn.num_layers=4 (repeatable; the grammar of twm --set)")
    parser.add_argument("--json", type=Path, default=None, help="write the record (machine, config, samples) here")
    return parser


def add_replay_options(parser: argparse.ArgumentParser) -> None:
    """Options of the benchmarks that sample a world-model batch."""
    parser.add_argument("--replay-size", type=int, default=None,
                        help="steps in the replay buffer (default 2·N·ℓ + ℓ from the preset)")
    parser.add_argument("--replay-source", choices=("synthetic", "env"), default="synthetic",
                        help="random frames that follow the stack rule, or a random-policy collection of --game")


def parse_overrides(items: Sequence[str]) -> dict[str, str]:
    """`KEY=VALUE` strings as plain string pairs (environment variables); config overrides go through
    `twm_core.config.parse_assignments`, the grammar of `twm --set`."""
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"expected KEY=VALUE, got {item!r}")
        overrides[key.strip()] = value.strip()
    return overrides


@dataclass
class Context:
    """What a benchmark runs with: its arguments, the config, the device and the replay generator."""

    args: argparse.Namespace
    cfg: TWMConfig
    device: torch.device
    generator: torch.Generator


def setup(args: argparse.Namespace) -> Context:
    """Threads first (before any torch work), then the config, the device and every seed."""
    if args.repeats < 1 or args.warmup < 0 or args.threads < 1:
        raise SystemExit("--repeats and --threads must be >= 1, --warmup >= 0")
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as a training process does (twm_core.allocator)
    cfg = make_config(args.preset, args.game, args.seed, parse_assignments(args.set))
    device = resolve_device(args.device)
    generator = seed_everything(cfg.seed, cfg.deterministic)
    return Context(args, cfg, device, generator)


# ------------------------------------------------------------------------------------------------------ timing
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, fn: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[T, float]:
    """`fn(*args, **kwargs)` and its wall-clock seconds (device work included)."""
    synchronize(device)
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    synchronize(device)
    return out, time.perf_counter() - start


def repeat(args: argparse.Namespace, step: Callable[[], dict[str, float]]) -> dict[str, list[float]]:
    """Run `step` warmup + repeats times; the per-phase values of the timed runs, in call order."""
    samples: dict[str, list[float]] = {}
    for i in range(args.warmup + args.repeats):
        values = step()
        if i >= args.warmup:
            for key, value in values.items():
                samples.setdefault(key, []).append(value)
    return samples


def to_ms(seconds: Sequence[float]) -> list[float]:
    return [s * 1e3 for s in seconds]


# ------------------------------------------------------------------------------------------------------ stats
def summarize(samples: Sequence[float]) -> dict[str, float]:
    """Median, min, max, mean, std, quartiles (inclusive method) and IQR; spreads are 0 for one sample."""
    values = sorted(float(v) for v in samples)
    if not values:
        raise ValueError("no samples")
    q1, q3 = statistics.quantiles(values, n=4, method="inclusive")[::2] if len(values) > 1 else values * 2
    return {"median": statistics.median(values), "min": values[0], "max": values[-1],
            "mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "q1": q1, "q3": q3, "iqr": q3 - q1}


def _fmt(value: float) -> str:
    if value == 0 or abs(value) >= 100:
        return f"{value:.1f}"
    return f"{value:.3f}" if abs(value) >= 1 else f"{value:.4f}"


def format_table(rows: dict[str, dict[str, Any]]) -> str:
    """One line per measurement: median, min, max, IQR, std, unit, n."""
    header = ("measure", "median", "min", "max", "IQR", "std", "unit", "n")
    lines = [header]
    for name, m in rows.items():
        lines.append((name, *(_fmt(m[k]) for k in ("median", "min", "max", "iqr", "std")), m["unit"],
                      str(len(m["samples"]))))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for j, line in enumerate(lines):
        cells = [c.ljust(w) if i in (0, 6) else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))]
        out.append("  ".join(cells).rstrip())
        if j == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------------ machine
def cpu_model() -> str:
    """The CPU's model name (the `model name` line of Linux /proc/cpuinfo; `platform.processor()` elsewhere)."""
    # A small reader on purpose: psutil (our process library) has no CPU model name, and py-cpuinfo would be a new
    # dependency for this one string.
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def machine_info(device: torch.device) -> dict[str, Any]:
    """CPU model, cores, torch build and threads, and the GPU when the device is CUDA."""
    info: dict[str, Any] = {
        "cpu_model": cpu_model(), "cpu_count": os.cpu_count(),
        "cpus_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(), "torch_interop_threads": torch.get_num_interop_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "device": str(device),
        "cuda_available": torch.cuda.is_available(), "git_commit": git_commit(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu_name=torch.cuda.get_device_name(device), gpu_memory_mb=props.total_memory / 2**20,
                    cuda_version=torch.version.cuda, cudnn_version=torch.backends.cudnn.version(),
                    cudnn_benchmark=torch.backends.cudnn.benchmark)
    return info


# ------------------------------------------------------------------------------------------------------ report
class Report:
    """Measurements of one benchmark run: printed as a table, written as JSON, returned as a dict."""

    def __init__(self, name: str, ctx: Context, sizes: dict[str, Any] | None = None,
                 config: dict[str, Any] | None = None) -> None:
        self.name, self.ctx = name, ctx
        self.sizes = sizes or {}
        self.config = config if config is not None else ctx.cfg.to_dict()
        self.measurements: dict[str, dict[str, Any]] = {}

    def add(self, name: str, samples: Sequence[float], unit: str, description: str = "") -> None:
        values = [float(v) for v in samples]
        self.measurements[name] = {"unit": unit, "description": description, **summarize(values),
                                   "samples": values}

    def finish(self) -> dict[str, Any]:
        args = self.ctx.args
        machine = machine_info(self.ctx.device)
        if self.ctx.device.type == "cuda":
            machine["peak_gpu_memory_mb"] = torch.cuda.max_memory_allocated(self.ctx.device) / 2**20
        settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        record = {
            "benchmark": self.name, "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "preset": self.config.get("preset", args.preset), "machine": machine, "settings": settings,
            "sizes": self.sizes, "config": self.config, "measurements": self.measurements,
        }
        gpu = f" ({machine['gpu_name']})" if "gpu_name" in machine else ""
        print(f"{self.name} · preset {record['preset']} · {machine['device']}{gpu} · {machine['cpu_model']} · "
              f"{machine['torch_threads']} thread(s) · {args.repeats} repeats, {args.warmup} warmup")
        if self.sizes:
            print("sizes: " + ", ".join(f"{k}={v}" for k, v in self.sizes.items()))
        print(format_table(self.measurements))
        if args.json is not None:
            path = Path(args.json)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(record, indent=2) + "\n")
            print(f"wrote {path}")
        sys.stdout.flush()
        return record


# ------------------------------------------------------------------------------------------------------ models
@dataclass
class Models:
    """Freshly initialised world model and actor-critic with their optimizers, as the trainer builds them."""

    wm: WorldModel
    ac: ActorCritic
    wm_opt: WorldModelOptimizers
    ac_opt: ActorCriticOptimizers


def num_actions(cfg: TWMConfig) -> int:
    """The action count of `cfg.env.game` (builds the env once)."""
    env = make_env(cfg.env, seed=0)
    try:
        return int(env.action_space.n)
    finally:
        env.close()


def build_models(cfg: TWMConfig, actions: int, device: torch.device) -> Models:
    wm = WorldModel(cfg, actions).to(device)
    ac = ActorCritic(cfg.ac, actions, wm.z_dim, wm.h_dim).to(device)
    return Models(wm, ac, WorldModelOptimizers.create(wm), ActorCriticOptimizers.create(ac))


def start_sampler(models: Models, replay: ReplayBuffer, generator: torch.Generator,
                  device: torch.device) -> Callable[[int], torch.Tensor]:
    """Fresh imagination start latents from replay observations (as `Trainer._sample_start_z`). Shape (n, Z)."""

    @torch.no_grad()
    def sample(n: int) -> torch.Tensor:
        obs = replay.sample_obs(n, generator).to(device)[:, None]  # (n, 1, F, 64, 64)
        return models.wm.obs_model.eval().encode_sample(obs, temperature=1.0)[:, 0]

    return sample


# ------------------------------------------------------------------------------------------------------ replay
def default_replay_size(cfg: TWMConfig) -> int:
    """2·N·ℓ + ℓ: twice the steps balanced sampling needs (it wants N·ℓ distinct valid starts)."""
    n, seq = cfg.train.wm_batch_size, cfg.train.wm_sequence_length
    return 2 * n * seq + seq


def synthetic_replay(cfg: TWMConfig, size: int, actions: int, seed: int) -> ReplayBuffer:
    """`size` steps of random 64×64 frames, random actions, tanh rewards in {-1, 0, 1} and ~1.2% dones.

    Filled through `reset_obs`/`add` with stacks that follow the buffer's stack rule (the previous stack shifted by
    one frame; F copies of the new frame after a done), so the buffer's own checks pass.
    """
    g = torch.Generator().manual_seed(derive_seed(seed, "bench-replay"))
    F, S = cfg.env.frame_stack, cfg.env.frame_size
    buf = ReplayBuffer(size, F, S, cfg.replay.temperature)
    frames = torch.randint(0, 256, (size + 1, S, S), dtype=torch.uint8, generator=g)  # (size+1, S, S)
    acts = torch.randint(actions, (size,), generator=g).tolist()
    raw = torch.multinomial(torch.tensor([0.05, 0.9, 0.05]), size, replacement=True, generator=g) - 1
    rewards = np.asarray(transform_reward(raw.double().numpy(), cfg.env)).tolist()
    u = torch.rand(size, generator=g)
    terminated, truncated = (u < 0.01).tolist(), ((u >= 0.01) & (u < 0.012)).tolist()
    stack = frames[0].expand(F, S, S).clone()  # (F, S, S)
    buf.reset_obs(stack, stack_reset=True)
    for i in range(size):
        done = terminated[i] or truncated[i]
        new = frames[i + 1: i + 2]  # (1, S, S)
        stack = new.expand(F, S, S).clone() if done else torch.cat([stack[1:], new])
        buf.add(acts[i], rewards[i], terminated[i], truncated[i], stack, next_stack_reset=done)
    return buf


def env_replay(cfg: TWMConfig, size: int, seed: int) -> ReplayBuffer:
    """`size` random-policy steps of the real env, stored as the trainer's prefill stores them."""
    env = make_env(cfg.env, seed=derive_seed(seed, "bench-env"))
    buf = ReplayBuffer(size, cfg.env.frame_stack, cfg.env.frame_size, cfg.replay.temperature)
    try:
        obs, _ = env.reset(seed=derive_seed(seed, "bench-env"))
        buf.reset_obs(obs, stack_reset=True)
        while buf.size < size:
            action = int(env.action_space.sample())
            obs, reward, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                obs, info = env.reset()
            buf.add(action, float(transform_reward(reward, cfg.env)), terminated, truncated, obs,
                    bool(info.get("stack_reset", False)))
    finally:
        env.close()
    return buf


def make_replay(ctx: Context, actions: int) -> ReplayBuffer:
    """The replay of `--replay-source` with `--replay-size` steps (checked against the WM batch size)."""
    cfg, args = ctx.cfg, ctx.args
    size = args.replay_size or default_replay_size(cfg)
    n, seq = cfg.train.wm_batch_size, cfg.train.wm_sequence_length
    if size - seq + 1 < n * seq:
        raise SystemExit(f"--replay-size {size} is too small: a batch of {n}×{seq} needs >= {n * seq + seq - 1}")
    if args.replay_source == "env":
        return env_replay(cfg, size, cfg.seed)
    return synthetic_replay(cfg, size, actions, cfg.seed)
