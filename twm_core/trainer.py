"""Training loop of paper Algorithm 1 as implemented (method.md §3, reference trainer.py `run`).

prefill (random policy) → pretrain φ, ψ, θ on it → initial evaluation → loop { collect with the policy while
`step_counter <= train_every`; then one training step (WM update, imagination, AC update) per `train_every` env
steps } → final evaluation. `train_every = (capacity − prefill) / ((budget − pretrain_budget) / (N·ℓ + M·H))`, 0.76
for the reference (≈1.316 training steps per env step). `train.total_steps` may stop the run earlier without
changing that ratio.

Everything the backend sees goes through the run directory: config.json, status.json, metrics.jsonl,
scores.jsonl, ckpt/ and replay/ (see `twm_core.run_dir`).
"""

from __future__ import annotations

import math
import os
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import psutil
import torch

from twm_core import checkpoint as ckpt
from twm_core import faults, pretrain
from twm_core.ac_training import ActorCriticOptimizers, actor_critic_update
from twm_core.acting import PolicyRunner
from twm_core.config import TWMConfig
from twm_core.envs import make_env, transform_reward
from twm_core.evaluation import evaluate, summarize
from twm_core.imagination import imagine, select_starts
from twm_core.metrics import MetricsWriter, ScoresWriter
from twm_core.models.actor_critic import ActorCritic
from twm_core.replay import ReplayBuffer
from twm_core.run_dir import RunDir, read_json, remove_temporary_files, write_json_atomic, write_status
from twm_core.seeding import derive_seed, seed_everything
from twm_core.wm_training import WorldModelOptimizers, world_model_update
from twm_core.world_model import WorldModel

FORMAT_VERSION = 1


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but CUDA is not available")
    return torch.device(device)


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


class Trainer:
    """Runs (or resumes) one training run in `run_dir`."""

    def __init__(self, cfg: TWMConfig, run_dir: RunDir, device: str = "auto",
                 on_progress: Callable[[int, int, str], None] | None = None) -> None:
        self.cfg, self.run_dir, self.on_progress = cfg, run_dir, on_progress
        self.device = resolve_device(device)
        self.generator = seed_everything(cfg.seed, cfg.deterministic)
        self.counters = Counters()
        self.env = make_env(cfg.env, seed=derive_seed(cfg.seed, "env"))
        self.num_actions = int(self.env.action_space.n)
        self.wm = WorldModel(cfg, self.num_actions).to(self.device)
        self.ac = ActorCritic(cfg.ac, self.num_actions, self.wm.z_dim, self.wm.h_dim).to(self.device)
        self.wm_opt = WorldModelOptimizers.create(self.wm)
        self.ac_opt = ActorCriticOptimizers.create(self.ac)
        self.replay = ReplayBuffer(cfg.replay.capacity, cfg.env.frame_stack, temperature=cfg.replay.temperature)
        self.train_every = self._train_every(cfg)
        self._stop_reason: str | None = None
        self._pending: dict[str, list] = {}  # metric -> [sum tensor, count] since the last log row
        self._episode = {"return": 0.0, "length": 0}
        self._last_transition = (0.0, False)  # transformed reward and done that led to the current observation
        self._state = "starting"
        self._clock = (time.time(), 0, 0)  # time, env steps, train steps at the last log row

    @staticmethod
    def _train_every(cfg: TWMConfig) -> float:
        t, ac = cfg.train, cfg.ac
        per_step = t.wm_train_steps * t.wm_batch_size * t.wm_sequence_length + ac.batch_size * ac.horizon
        return (cfg.replay.capacity - cfg.replay.prefill) / ((t.budget - t.pretrain_budget) / per_step)

    # ------------------------------------------------------------------------------------------- run
    def run(self) -> dict[str, float]:
        """Train to `train.total_steps` env steps; SIGTERM/SIGINT checkpoint and stop (status 'cancelled')."""
        self.run_dir.create()
        # This process is now the run's only writer, so hidden temporaries are leftovers of a killed write.
        remove_temporary_files(self.run_dir)
        if not self.run_dir.config_path.exists():
            write_json_atomic(self.run_dir.config_path, self.cfg.to_dict())
        previous = {s: signal.signal(s, self._request_stop) for s in (signal.SIGTERM, signal.SIGINT)}
        self.metrics = MetricsWriter(self.run_dir.metrics_path)
        self.scores = ScoresWriter(self.run_dir.scores_path)
        try:
            self._start_env()
            # A new attempt: the error an earlier attempt left (a kill the job manager recorded) no longer holds.
            self._status(None, error=None)
            summary = self._run_phases()
            if self._stop_reason is not None:
                self._status("cancelled", error=None)
            return summary
        except Exception as e:
            self._status("failed", error=f"{type(e).__name__}: {e}\n{traceback.format_exc()[-2000:]}")
            raise
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            self.metrics.close()
            self.scores.close()
            self.env.close()

    @property
    def stopped(self) -> bool:
        """True when a signal stopped the run before it finished (its state is checkpointed)."""
        return self._stop_reason is not None

    def _request_stop(self, signum: int, frame: object) -> None:
        self._stop_reason = signal.Signals(signum).name

    def _run_phases(self) -> dict[str, float]:
        c, total = self.counters, self.cfg.train.total_steps
        if c.phase == "prefill":
            self._prefill()
            if self._stop_reason:
                return {}
            c.phase = "pretrain"
            self.save_checkpoint()
        if c.phase == "pretrain":
            self._pretrain()
            c.phase = "train"
            self._evaluate(final=False)
            self.save_checkpoint()
        while c.phase == "train" and self.replay.size < total and self._stop_reason is None:
            self._collect()
            self._train()
            if self.replay.size - c.last_checkpoint >= self.cfg.train.checkpoint_every or self._stop_reason:
                self.save_checkpoint()
        if self._stop_reason is not None:
            return {}
        summary: dict[str, float] = {}
        if c.phase in ("train", "final_eval"):
            c.phase = "final_eval"
            summary = self._evaluate(final=True)
            c.phase = "finished"
            self.save_checkpoint()
        self._status("finished", error=None)
        return summary

    # ------------------------------------------------------------------------------------------- phases
    def _env_step(self, action: int) -> None:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._episode["return"] += float(reward)
        self._episode["length"] += 1
        if terminated or truncated:
            if info.get("game_over", True) or truncated:  # a score is a whole game (all lives)
                self._end_episode()
            obs, info = self.env.reset()
        reward = float(transform_reward(reward, self.cfg.env))
        self.replay.add(action, reward, terminated, truncated, obs, bool(info.get("stack_reset", False)))
        self._last_transition = (reward, bool(terminated or truncated))
        if self.replay.size % self.cfg.train.log_every == 0:
            self._log()

    def _end_episode(self) -> None:
        self.counters.episodes += 1
        step = self.replay.size + 1
        self.scores.write(step, "train", self._episode["return"], self._episode["length"])
        self.metrics.write(step, {"env/episode_return": self._episode["return"],
                                  "env/episode_length": self._episode["length"],
                                  "env/episodes": self.counters.episodes})
        self._episode = {"return": 0.0, "length": 0}

    def _start_env(self) -> None:
        obs, info = self.env.reset(seed=derive_seed(self.cfg.seed, f"env-{self.counters.resumes}"))
        if self.replay.size == 0:
            self.replay.reset_obs(obs, True)
        else:  # a resumed run: the episode that was running is cut (truncated), a new one starts
            self.replay.interrupt_episode(obs)
            self.counters.interrupted_rows.append(self.replay.size - 1)

    def _prefill(self) -> None:
        self._status("prefill")
        while self.replay.size < self.cfg.replay.prefill and self._stop_reason is None:
            self._env_step(int(self.env.action_space.sample()))

    def _pretrain(self) -> None:
        self._status("pretrain")
        t = self.cfg.train
        args = (self.generator, self.device, self._accumulate)
        pretrain.pretrain_observation_model(self.wm, self.wm_opt, self.replay, t.pretrain_budget * t.pretrain_obs_p,
                                            *args)
        logits = pretrain.encode_buffer(self.wm, self.replay, self.device)
        pretrain.pretrain_dynamics_model(self.wm, self.wm_opt, self.replay, logits,
                                         t.pretrain_budget * t.pretrain_dyn_p, *args)
        pretrain.pretrain_actor_critic(self.wm, self.ac, self.ac_opt, self.replay, logits,
                                       t.pretrain_budget * t.pretrain_ac_p, *args)
        self.metrics.write(self.replay.size, self._pending_means(prefix="pretrain/"))

    def _collect(self) -> None:
        if self._state != "training":
            self._status("training")
        runner = PolicyRunner(self.wm, self.ac, 1, self.device)
        c = self.counters
        while c.step_counter <= self.train_every and self.replay.size < self.cfg.train.total_steps:
            if self.replay.size - c.last_eval >= self.cfg.train.eval_every:
                self._evaluate(final=False)
            reward, done = self._last_transition
            action = runner.act(self.replay.current_obs()[None].to(self.device), [reward], [done])
            self._env_step(int(action[0]))
            c.step_counter += 1
            if self._stop_reason is not None:
                break

    def _train(self) -> None:
        c = self.counters
        while c.step_counter >= self.train_every:
            c.step_counter -= self.train_every
            self.train_step()

    def train_step(self) -> None:
        """One world-model update, one imagined batch and one actor-critic update (reference `_train_step`)."""
        cfg, c = self.cfg, self.counters
        for _ in range(cfg.train.wm_train_steps):
            batch = self.replay.sample(cfg.train.wm_batch_size, cfg.train.wm_sequence_length, self.generator)
            batch = batch.to(self.device)
            z, metrics = world_model_update(self.wm, self.wm_opt, batch)
        self._accumulate("wm", metrics)
        # the starts come from the last WM batch, without its next observation
        start = select_starts(z, batch.actions, batch.rewards, batch.terminated, batch.truncated,
                              cfg.ac.batch_size, self.generator)
        traj = imagine(self.wm, self.ac, start, cfg.ac.horizon, self._sample_start_z, cfg.ac.discount_threshold)
        c.train_steps += 1
        self._accumulate("ac", actor_critic_update(self.ac, self.ac_opt, traj, cfg.env.discount_lambda,
                                                   c.train_steps))

    @torch.no_grad()
    def _sample_start_z(self, n: int) -> torch.Tensor:
        obs = self.replay.sample_obs(n, self.generator).to(self.device)[:, None]  # (n, 1, F, 64, 64)
        return self.wm.obs_model.eval().encode_sample(obs, temperature=1.0)[:, 0]

    def _evaluate(self, final: bool) -> dict[str, float]:
        c, t = self.counters, self.cfg.train
        episodes = t.final_eval_episodes if final else t.eval_episodes
        c.last_eval = self.replay.size
        if episodes == 0:
            return {}
        self._status("evaluating")
        kind = "final_eval" if final else "eval"
        seed = derive_seed(self.cfg.seed, f"{kind}-{self.replay.size}")
        results = evaluate(self.wm, self.ac, self.cfg, episodes, seed, self.device)
        for r in results:
            self.scores.write(self.replay.size, kind, r.score, r.length)
        summary = summarize(self.cfg.env.game, results, prefix="eval/final_" if final else "eval/")
        self.metrics.write(self.replay.size, summary)
        self._status("training")
        return summary

    # ------------------------------------------------------------------------------------------- logging
    def _accumulate(self, prefix: str, metrics: dict[str, torch.Tensor]) -> None:
        """Sum metrics in place on their device (no `.item()` sync per step). Keeping one small tensor per step
        instead fragments the heap between the large activation buffers: RSS grew by ~10 MB per update."""
        for key, value in metrics.items():
            name = f"{prefix}/{key}"
            if name not in self._pending:
                self._pending[name] = [torch.zeros((), device=value.device), 0]
            total = self._pending[name]
            total[0].add_(value.detach().float())
            total[1] += 1

    def _pending_means(self, prefix: str = "") -> dict[str, float | torch.Tensor]:
        values: dict[str, float | torch.Tensor] = {
            f"{prefix}{k}": total / count for k, (total, count) in self._pending.items() if count}
        self._pending.clear()
        return values

    def _log(self) -> None:
        """One metrics row: the means of the training metrics since the last row, replay and performance."""
        now, steps, train_steps = time.time(), self.replay.size, self.counters.train_steps
        values = self._pending_means()
        last_time, last_steps, last_train = self._clock
        elapsed = max(now - last_time, 1e-9)
        values.update({
            "replay/size": steps, "replay/visit_entropy": self.replay.visit_entropy(),
            "perf/env_steps_per_s": (steps - last_steps) / elapsed,
            "perf/train_steps_per_s": (train_steps - last_train) / elapsed,
            "perf/train_steps": train_steps, "perf/ram_mb": _rss_mb(),
        })
        if self.device.type == "cuda":
            values["perf/gpu_mem_mb"] = torch.cuda.max_memory_allocated(self.device) / 2**20
        self.metrics.write(steps, values)
        self._clock = (now, steps, train_steps)
        self._status(None)

    def _status(self, state: str | None, **extra: object) -> None:
        """Write status.json (state, pid, step, ...); `None` keeps the current state."""
        self._state = state or self._state
        write_status(self.run_dir, state=self._state, pid=os.getpid(), step=self.replay.size,
                     total_steps=self.cfg.train.total_steps, phase=self.counters.phase,
                     train_steps=self.counters.train_steps, device=str(self.device), **extra)
        if self.on_progress is not None:
            self.on_progress(self.replay.size, self.cfg.train.total_steps, self.counters.phase)

    # ------------------------------------------------------------------------------------------- checkpoints
    def save_checkpoint(self) -> None:
        """Replay chunks first (append-only), then the checkpoint that refers to them (atomic)."""
        self.replay.flush(self.run_dir.replay_dir)
        faults.reached("checkpoint.after_replay")
        payload = {
            "config": self.cfg.to_dict(), "num_actions": self.num_actions,
            "world_model": self.wm.state_dict(), "actor_critic": self.ac.state_dict(),
            "optimizers": {"obs": self.wm_opt.obs.state_dict(), "dyn": self.wm_opt.dyn.state_dict(),
                           "actor": self.ac_opt.actor.state_dict(), "critic": self.ac_opt.critic.state_dict()},
            "replay": self.replay.state_dict(),
            # this checkpoint is the last one, from the resumed run's point of view too (else it saves again at +1)
            "counters": asdict(replace(self.counters, last_checkpoint=self.replay.size)),
            "rng": ckpt.capture_rng_state({"replay": self.generator}),
            # append-only logs: a resumed run cuts them back to these sizes, so no row is written twice
            "log_bytes": {"metrics": _size(self.run_dir.metrics_path), "scores": _size(self.run_dir.scores_path)},
        }
        ckpt.save_checkpoint(self.run_dir, self.replay.size, payload)
        self.counters.last_checkpoint = self.replay.size
        ckpt.prune_checkpoints(self.run_dir, self.cfg.train.keep_checkpoints)

    @classmethod
    def resume(cls, run_dir: RunDir, device: str = "auto",
               on_progress: Callable[[int, int, str], None] | None = None) -> Trainer:
        """Continue a run from its latest checkpoint: weights, optimizers, replay, RNG and counters."""
        latest = ckpt.latest_checkpoint(run_dir)
        if latest is None:
            raise FileNotFoundError(f"no checkpoint in {run_dir.path}")
        step, path = latest
        state = ckpt.load_checkpoint(path)
        cfg = TWMConfig.from_dict(read_json(run_dir.config_path) or state["config"])
        trainer = cls(cfg, run_dir, device, on_progress)
        trainer.wm.load_state_dict(state["world_model"])
        trainer.ac.load_state_dict(state["actor_critic"])
        for name, opt in (("obs", trainer.wm_opt.obs), ("dyn", trainer.wm_opt.dyn),
                          ("actor", trainer.ac_opt.actor), ("critic", trainer.ac_opt.critic)):
            opt.load_state_dict(state["optimizers"][name])
        trainer.counters = Counters(**state["counters"])
        trainer.counters.resumes += 1
        trainer.replay = ReplayBuffer.load(run_dir.replay_dir, cfg.replay.capacity, upto=step,
                                           frame_stack=cfg.env.frame_stack, temperature=cfg.replay.temperature)
        trainer.replay.load_state_dict(state["replay"])
        for row in trainer.counters.interrupted_rows:  # cuts made by earlier resumes
            trainer.replay._truncated[row] = True
        ckpt.restore_rng_state(state["rng"], {"replay": trainer.generator})
        for name, log in (("metrics", run_dir.metrics_path), ("scores", run_dir.scores_path)):
            size = int(state["log_bytes"][name])
            if _size(log) > size:
                os.truncate(log, size)
        return trainer


def _size(path: os.PathLike) -> int:
    return os.path.getsize(path) if os.path.exists(path) else 0


def _rss_mb() -> float:
    """Resident set size of this process, in MiB (NaN where the platform will not say)."""
    try:
        return psutil.Process().memory_info().rss / 2**20
    except psutil.Error:
        return math.nan
