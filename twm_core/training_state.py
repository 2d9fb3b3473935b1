"""What a training checkpoint holds, how a run saves one, and how a run resumes from it.

A checkpoint (`twm_core.checkpoint`: atomic, weights-only) of a run at env step `step` is the dict

    config        TWMConfig.to_dict()              num_actions   int
    world_model   WorldModel.state_dict()          actor_critic  ActorCritic.state_dict()
    optimizers    {obs, dyn, actor, critic}: Adam state dicts
    replay        ReplayBuffer.state_dict(): size and visit counts (the frames are in replay/ chunks)
    counters      `Counters` as a dict
    rng           python, numpy, torch (and CUDA) RNG states, and the replay Generator's
    log_bytes     {metrics, scores}: sizes of the append-only logs when it was written
    (+ format_version, step, added by `checkpoint.save_checkpoint`)

A snapshot (`save_snapshot`) is the weights alone, `{config, num_actions, world_model, actor_critic, kind:
"snapshot"}` in `ckpt/snap_{step:09d}.pt`, at the log-spaced steps of `snapshot_steps`; a resume never starts from
one and pruning never deletes one.

`save` flushes the replay chunks first and then writes the checkpoint that refers to them, so a checkpoint never
names rows that are not on disk. `restore` puts all of it back into a freshly built trainer and cuts the logs back
to `log_bytes`, so that no row the run logs again after its checkpoint is there twice.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

import torch

from twm_core import checkpoint as ckpt
from twm_core import faults, replay_store
from twm_core.config import TWMConfig
from twm_core.file_io import read_json
from twm_core.optim import use_fused
from twm_core.run_dir import RunDir

if TYPE_CHECKING:
    from twm_core.ac_training import ActorCriticOptimizers
    from twm_core.models.actor_critic import ActorCritic
    from twm_core.replay import ReplayBuffer
    from twm_core.wm_training import WorldModelOptimizers
    from twm_core.world_model import WorldModel


@dataclass
class Counters:
    """Everything besides weights, optimizers and replay that a resumed run needs."""

    phase: str = "prefill"  # prefill → pretrain → train → final_eval → finished
    train_steps: int = 0
    step_counter: float = 0.0
    last_eval: int = 0
    last_checkpoint: int = 0
    episodes: int = 0
    resumes: int = 0
    interrupted_rows: list[int] = field(default_factory=list)


class TrainingState(Protocol):
    """The parts of a run that a checkpoint saves and a resume restores (a `Trainer` has them all)."""

    cfg: TWMConfig
    run_dir: RunDir
    num_actions: int
    wm: WorldModel
    ac: ActorCritic
    wm_opt: WorldModelOptimizers
    ac_opt: ActorCriticOptimizers
    replay: ReplayBuffer
    counters: Counters
    generator: torch.Generator


def _optimizers(state: TrainingState) -> dict[str, torch.optim.Optimizer]:
    return {"obs": state.wm_opt.obs, "dyn": state.wm_opt.dyn, "actor": state.ac_opt.actor,
            "critic": state.ac_opt.critic}


def _log_paths(run_dir: RunDir) -> dict[str, os.PathLike]:
    return {"metrics": run_dir.metrics_path, "scores": run_dir.scores_path}


def _size(path: os.PathLike) -> int:
    return os.path.getsize(path) if os.path.exists(path) else 0


def save(state: TrainingState) -> None:
    """Replay chunks first (append-only), then the checkpoint that refers to them (atomic); then prune."""
    run_dir, step = state.run_dir, state.replay.size
    replay_store.flush(state.replay, run_dir.replay_dir)
    faults.reached("checkpoint.after_replay")
    payload = {
        "config": state.cfg.to_dict(), "num_actions": state.num_actions,
        "world_model": state.wm.state_dict(), "actor_critic": state.ac.state_dict(),
        "optimizers": {name: opt.state_dict() for name, opt in _optimizers(state).items()},
        "replay": state.replay.state_dict(),
        # this checkpoint is the last one, from the resumed run's point of view too (else it saves again at +1)
        "counters": asdict(replace(state.counters, last_checkpoint=step)),
        "rng": ckpt.capture_rng_state({"replay": state.generator}),
        # append-only logs: a resumed run cuts them back to these sizes, so no row is written twice
        "log_bytes": {name: _size(path) for name, path in _log_paths(run_dir).items()},
    }
    ckpt.save_checkpoint(run_dir, step, payload)
    state.counters.last_checkpoint = step
    ckpt.prune_checkpoints(run_dir, state.cfg.train.keep_checkpoints, keep_every=state.cfg.train.keep_every)


def save_snapshot(state: TrainingState) -> None:
    """The weights at the current step, alone (`ckpt/snap_{step:09d}.pt`): what the checkpoint film shows."""
    payload = {"config": state.cfg.to_dict(), "num_actions": state.num_actions,
               "world_model": state.wm.state_dict(), "actor_critic": state.ac.state_dict(), "kind": ckpt.SNAPSHOT}
    ckpt.save_checkpoint(state.run_dir, state.replay.size, payload)


def snapshot_steps(cfg: TWMConfig) -> frozenset[int]:
    """The env steps of `train.snapshots` weights-only snapshots, log-spaced from the prefill to `total_steps`.

    Step i of n is round(p · (T/p)^(i/(n−1))) for p = `replay.prefill`, T = `train.total_steps` (i = 0 … n−1; one
    snapshot is at T), so early training, where the weights change fastest, gets more of them; rounding may merge
    steps, so there can be fewer than n. E.g. p = 5000, T = 100k, n = 8: 5000, 7671, 11768, 18053, 27696, 42489,
    65184, 100000.
    """
    n, total = cfg.train.snapshots, cfg.train.total_steps
    first = min(max(cfg.replay.prefill, 1), total)
    if n == 0:
        return frozenset()
    if n == 1:
        return frozenset({total})
    return frozenset(round(first * (total / first) ** (i / (n - 1))) for i in range(n))


def load_latest(run_dir: RunDir) -> tuple[int, dict[str, Any], TWMConfig]:
    """The run's latest checkpoint: its step, its contents and the run's config (config.json, else the
    checkpoint's own); FileNotFoundError when the run has none."""
    latest = ckpt.latest_checkpoint(run_dir)
    if latest is None:
        raise FileNotFoundError(f"no checkpoint in {run_dir.path}")
    step, path = latest
    checkpoint = ckpt.load_checkpoint(path)
    return step, checkpoint, TWMConfig.from_dict(read_json(run_dir.config_path) or checkpoint["config"])


def restore(state: TrainingState, step: int, checkpoint: dict[str, Any]) -> None:
    """Put a checkpoint of step `step` back into freshly built parts: weights, optimizers, counters (one more
    resume), the replay rows [0, step) with their visit counts, the RNG states; then cut the logs back."""
    cfg, run_dir = state.cfg, state.run_dir
    state.wm.load_state_dict(checkpoint["world_model"])
    state.ac.load_state_dict(checkpoint["actor_critic"])
    for name, opt in _optimizers(state).items():
        opt.load_state_dict(checkpoint["optimizers"][name])
        use_fused(opt)
    state.counters = Counters(**checkpoint["counters"])
    state.counters.resumes += 1
    state.replay = replay_store.load(run_dir.replay_dir, cfg.replay.capacity, upto=step,
                                     frame_stack=cfg.env.frame_stack, temperature=cfg.replay.temperature)
    state.replay.load_state_dict(checkpoint["replay"])
    state.replay.mark_interrupted(state.counters.interrupted_rows)  # cuts made by earlier resumes
    ckpt.restore_rng_state(checkpoint["rng"], {"replay": state.generator})
    for name, log in _log_paths(run_dir).items():
        size = int(checkpoint["log_bytes"][name])
        if _size(log) > size:
            os.truncate(log, size)
