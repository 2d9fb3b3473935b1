"""Training loop of paper Algorithm 1 as implemented (method.md §3, reference trainer.py `run`).

prefill (random policy) → pretrain φ, ψ, θ on it → initial evaluation → loop { collect with the policy while
`step_counter <= train_every`; then one training step (WM update, imagination, AC update) per `train_every` env
steps } → final evaluation. `train_every = (capacity − prefill) / ((budget − pretrain_budget) / (N·ℓ + M·H))`, 0.76
for the reference (≈1.316 training steps per env step). `train.total_steps` may stop the run earlier without
changing that ratio.

`Trainer` owns the parts (env, models, optimizers, replay, generator) and the schedule. Around it: what is logged
is `twm_core.recorder` (metrics.jsonl, scores.jsonl, status.json), what a checkpoint holds and how a run resumes is
`twm_core.training_state`, the device and the performance settings are `twm_core.performance`. Everything the
backend sees goes through the run directory: config.json, status.json, metrics.jsonl, scores.jsonl, ckpt/ and
replay/ (see `twm_core.run_dir`).

Saves fall on the steps they name. During collection, at the step where `eval_every` or `checkpoint_every` env
steps have passed since the last evaluation or checkpoint, the evaluation runs first, then the full checkpoint,
then a snapshot if the step is one of `training_state.snapshot_steps`, all before the policy acts at that step, so
all three hold the same weights. At the end: a checkpoint (if due) before the final evaluation, then the final
checkpoint and snapshot after it. A signal stop checkpoints wherever it is. Where and when a save happens draws
no random number and changes no state the training reads.
"""

from __future__ import annotations

import signal
import traceback
from collections.abc import Callable

import numpy as np
import torch

from twm_core import pretrain, training_state
from twm_core.ac_training import ActorCriticOptimizers, actor_critic_update
from twm_core.acting import PolicyRunner
from twm_core.config import TWMConfig
from twm_core.envs import make_env, transform_reward
from twm_core.evaluation import EpisodeResult, evaluate, summarize
from twm_core.file_io import write_json_atomic
from twm_core.imagination import imagine, select_starts
from twm_core.models.actor_critic import ActorCritic
from twm_core.performance import apply_performance_settings, resolve_device
from twm_core.recorder import ENV_STEPS, EPISODES, Position, PretrainLog, ProgressCallback, Recorder
from twm_core.replay import ReplayBuffer
from twm_core.run_dir import RunDir, remove_temporary_files
from twm_core.seeding import derive_seed, seed_everything
from twm_core.training_state import Counters
from twm_core.wm_training import WorldModelOptimizers, world_model_update
from twm_core.world_model import WorldModel

__all__ = ["Trainer", "Counters", "resolve_device"]  # resolve_device: imported from here by the CLI and bench


class _Stopped(Exception):
    """A signal asked the run to stop in the middle of a pretraining stage."""


class Trainer:
    """Runs (or resumes) one training run in `run_dir`."""

    def __init__(self, cfg: TWMConfig, run_dir: RunDir, device: str = "auto",
                 on_progress: ProgressCallback | None = None) -> None:
        self.cfg, self.run_dir = cfg, run_dir
        self.device = resolve_device(device)
        self.generator = seed_everything(cfg.seed, cfg.deterministic)
        self.counters = Counters()
        self.env = make_env(cfg.env, seed=derive_seed(cfg.seed, "env"))
        self.num_actions = int(self.env.action_space.n)  # type: ignore[attr-defined]  # a Discrete space
        self.wm = WorldModel(cfg, self.num_actions).to(self.device)
        self.ac = ActorCritic(cfg.ac, self.num_actions, self.wm.z_dim, self.wm.h_dim).to(self.device)
        apply_performance_settings(cfg.train, self.wm, self.ac)
        self.wm_opt = WorldModelOptimizers.create(self.wm)
        self.ac_opt = ActorCriticOptimizers.create(self.ac)
        self.replay = ReplayBuffer(cfg.replay.capacity, cfg.env.frame_stack, temperature=cfg.replay.temperature)
        self.train_every = self._train_every(cfg)
        self.recorder = Recorder(run_dir, cfg.train.total_steps, self.device, self._position, on_progress,
                                 final_eval_episodes=cfg.train.final_eval_episodes)
        self.snapshot_steps = training_state.snapshot_steps(cfg)
        self._last_snapshot = -1  # the step of this attempt's last snapshot
        self._stop_reason: str | None = None
        self._episode = {"return": 0.0, "length": 0}
        self._last_transition = (0.0, False)  # transformed reward and done that led to the current observation

    @staticmethod
    def _frames_per_train_step(cfg: TWMConfig) -> int:
        """Budget frames one training step uses: wm_train_steps·N·ℓ + M·H."""
        t, ac = cfg.train, cfg.ac
        return t.wm_train_steps * t.wm_batch_size * t.wm_sequence_length + ac.batch_size * ac.horizon

    @staticmethod
    def _train_every(cfg: TWMConfig) -> float:
        t = cfg.train
        per_step = Trainer._frames_per_train_step(cfg)
        return (cfg.replay.capacity - cfg.replay.prefill) / ((t.budget - t.pretrain_budget) / per_step)

    def _position(self) -> Position:
        return Position(self.replay.size, self.counters.phase, self.counters.train_steps)

    # ------------------------------------------------------------------------------------------- run
    def run(self) -> dict[str, float]:
        """Train to `train.total_steps` env steps; SIGTERM/SIGINT checkpoint and stop (status 'cancelled')."""
        self.run_dir.create()
        # This process is now the run's only writer, so hidden temporaries are leftovers of a killed write.
        remove_temporary_files(self.run_dir)
        if not self.run_dir.config_path.exists():
            write_json_atomic(self.run_dir.config_path, self.cfg.to_dict())
        previous = {s: signal.signal(s, self._request_stop) for s in (signal.SIGTERM, signal.SIGINT)}
        self.recorder.open()
        try:
            self._start_env()
            # A new attempt: the error an earlier attempt left (a kill the job manager recorded) no longer holds.
            self.recorder.status(None, error=None)
            summary = self._run_phases()
            if self.stopped:
                self.recorder.status("cancelled", error=None)
            return summary
        except Exception as e:
            self.recorder.status("failed", error=f"{type(e).__name__}: {e}\n{traceback.format_exc()[-2000:]}")
            raise
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            self.recorder.close()
            self.env.close()

    @property
    def stopped(self) -> bool:
        """True when a signal stopped the run before it finished (its state is checkpointed)."""
        return self._stop_reason is not None

    def _request_stop(self, signum: int, frame: object) -> None:
        self._stop_reason = signal.Signals(signum).name

    def _run_phases(self) -> dict[str, float]:
        """Algorithm 1, from the phase the counters are in (a resumed run skips the phases it has done)."""
        c, total = self.counters, self.cfg.train.total_steps
        if c.phase == "prefill":  # random policy until `replay.prefill` steps
            self._prefill()
            if self.stopped:  # a cancelled prefill resumes where it stopped, with a new episode
                self.save_checkpoint()
                return {}
            c.phase = "pretrain"
            self.save_checkpoint()
        if c.phase == "pretrain":  # φ, then ψ, then θ on the prefill
            try:
                self._pretrain()
            except _Stopped:  # no checkpoint mid-stage: a resume pretrains again from the prefill's checkpoint
                return {}
            c.phase = "train"
            self._evaluate(final=False)
            self.save_checkpoint()
        while c.phase == "train" and self.replay.size < total and not self.stopped:
            self._collect()  # evaluates and checkpoints at the steps they fall on
            self._train()
            if self.stopped:
                self.save_checkpoint()
        if self.stopped:
            return {}
        if c.phase == "train" and self.replay.size - c.last_checkpoint >= self.cfg.train.checkpoint_every:
            self.save_checkpoint()  # before the final evaluation (which may be long): a kill there resumes at it
        summary: dict[str, float] = {}
        if c.phase in ("train", "final_eval"):
            c.phase = "final_eval"
            summary = self._evaluate(final=True)
            c.phase = "finished"
            self.save_checkpoint()
            self._snapshot_if_due()
        self.recorder.status("finished", error=None)
        return summary

    # ------------------------------------------------------------------------------------------- phases
    def _prefill(self) -> None:
        self.recorder.begin_stage("prefill", ENV_STEPS, self.cfg.replay.prefill)
        self.recorder.status("prefill")
        while self.replay.size < self.cfg.replay.prefill and not self.stopped:
            self._env_step(int(self.env.action_space.sample()))

    def _pretrain(self) -> None:
        """φ, ψ, θ in turn; a metric row every log interval's worth of frames (`recorder.PretrainLog`)."""
        self.recorder.status("pretrain")
        t = self.cfg.train
        # as many budget frames per row as the main loop's log_every env steps train on (at least 20 rows a stage)
        log = PretrainLog(self.recorder, self.replay.size,
                          t.log_every / self.train_every * self._frames_per_train_step(self.cfg))
        args = (self.generator, self.device, self.recorder.accumulate)
        budget = t.pretrain_budget * t.pretrain_obs_p
        with log.stage("pretrain/obs", budget) as progress:
            pretrain.pretrain_observation_model(self.wm, self.wm_opt, self.replay, budget, *args,
                                                self._stoppable(progress))
        budget = t.pretrain_budget * t.pretrain_dyn_p
        with log.stage("pretrain/dyn", budget) as progress:
            logits = pretrain.encode_buffer(self.wm, self.replay, self.device)
            pretrain.pretrain_dynamics_model(self.wm, self.wm_opt, self.replay, logits, budget, *args,
                                             self._stoppable(progress))
        budget = t.pretrain_budget * t.pretrain_ac_p
        with log.stage("pretrain/ac", budget) as progress:
            pretrain.pretrain_actor_critic(self.wm, self.ac, self.ac_opt, self.replay, logits, budget, *args,
                                           self._stoppable(progress))

    def _stoppable(self, progress: Callable[[float], None]) -> Callable[[float], None]:
        """`progress`, then `_Stopped` once a signal asked the run to stop (pretraining takes hours on a CPU: a
        cancel must not wait for its end)."""
        def call(frames: float) -> None:
            progress(frames)
            if self.stopped:
                raise _Stopped
        return call

    def _collect(self) -> None:
        """Act with the policy while `step_counter <= train_every`; what falls due at a step (`_due_at_step`) is
        done before acting at it."""
        if self.recorder.state != "training":
            self._enter_train()
        runner = PolicyRunner(self.wm, self.ac, 1, self.device)
        c = self.counters
        while c.step_counter <= self.train_every and self.replay.size < self.cfg.train.total_steps:
            self._due_at_step()
            reward, done = self._last_transition
            action = runner.act(self.replay.current_obs()[None].to(self.device), np.array([reward]), np.array([done]))
            self._env_step(int(action[0]))
            c.step_counter += 1
            if self.stopped:
                break

    def _due_at_step(self) -> None:
        """At the step the policy is about to act at: the evaluation, then the full checkpoint, then the snapshot
        that fall on it, all of the same weights (a resumed run does not redo those its checkpoint counted)."""
        c, t = self.counters, self.cfg.train
        if self.replay.size - c.last_eval >= t.eval_every:
            self._evaluate(final=False)
        if self.replay.size - c.last_checkpoint >= t.checkpoint_every:
            self.save_checkpoint()
        self._snapshot_if_due()

    def _snapshot_if_due(self) -> None:
        step = self.replay.size
        if step in self.snapshot_steps and step != self._last_snapshot:
            training_state.save_snapshot(self)
            self._last_snapshot = step

    def _enter_train(self) -> None:
        prefill = self.cfg.replay.prefill
        self.recorder.begin_stage("train", ENV_STEPS, self.cfg.train.total_steps - prefill, offset=prefill)
        self.recorder.status("training")

    def _train(self) -> None:
        """One training step per `train_every` env steps collected."""
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
        self.recorder.accumulate("wm", metrics)
        # the starts come from the last WM batch, without its next observation
        start = select_starts(z, batch.actions, batch.rewards, batch.terminated, batch.truncated,
                              cfg.ac.batch_size, self.generator)
        traj = imagine(self.wm, self.ac, start, cfg.ac.horizon, self._sample_start_z, cfg.ac.discount_threshold)
        c.train_steps += 1
        self.recorder.accumulate("ac", actor_critic_update(self.ac, self.ac_opt, traj, cfg.env.discount_lambda,
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
        kind = "final_eval" if final else "eval"
        self.recorder.begin_stage(kind, EPISODES, episodes)
        self.recorder.status("evaluating")
        seed = derive_seed(self.cfg.seed, f"{kind}-{self.replay.size}")
        done: list[EpisodeResult] = []

        def on_episode(result: EpisodeResult) -> None:  # reads only: the evaluation's RNG use stays as it was
            done.append(result)
            self.recorder.progress(len(done))

        results = evaluate(self.wm, self.ac, self.cfg, episodes, seed, self.device, on_episode=on_episode)
        summary = summarize(self.cfg.env.game, results, prefix="eval/final_" if final else "eval/")
        self.recorder.evaluation(self.replay.size, kind, results, summary)
        if not final:
            self._enter_train()
        return summary

    # ------------------------------------------------------------------------------------------- the env
    def _start_env(self) -> None:
        obs, info = self.env.reset(seed=derive_seed(self.cfg.seed, f"env-{self.counters.resumes}"))
        if self.replay.size == 0:
            self.replay.reset_obs(obs, True)
        else:  # a resumed run: the episode that was running is cut (truncated), a new one starts
            self.replay.interrupt_episode(obs)
            self.counters.interrupted_rows.append(self.replay.size - 1)

    def _env_step(self, action: int) -> None:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._episode["return"] += float(reward)
        self._episode["length"] += 1
        if terminated or truncated:
            if info.get("game_over", True) or truncated:  # a score is a whole game (all lives)
                self._end_episode()
            obs, info = self.env.reset()
        reward = float(transform_reward(float(reward), self.cfg.env))
        self.replay.add(action, reward, terminated, truncated, obs, bool(info.get("stack_reset", False)))
        self._last_transition = (reward, bool(terminated or truncated))
        if self.replay.size % self.cfg.train.log_every == 0:
            self.recorder.log_row(self.replay.visit_entropy())

    def _end_episode(self) -> None:
        self.counters.episodes += 1
        self.recorder.train_episode(self.replay.size + 1, self._episode["return"], int(self._episode["length"]),
                                    self.counters.episodes)
        self._episode = {"return": 0.0, "length": 0}

    # ------------------------------------------------------------------------------------------- checkpoints
    def save_checkpoint(self) -> None:
        """Replay chunks first (append-only), then the checkpoint that refers to them (`training_state.save`)."""
        training_state.save(self)

    @classmethod
    def resume(cls, run_dir: RunDir, device: str = "auto", on_progress: ProgressCallback | None = None) -> Trainer:
        """Continue a run from its latest checkpoint: weights, optimizers, replay, RNG and counters."""
        step, checkpoint, cfg = training_state.load_latest(run_dir)
        trainer = cls(cfg, run_dir, device, on_progress)
        training_state.restore(trainer, step, checkpoint)
        return trainer
