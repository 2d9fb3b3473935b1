"""Typed, frozen configuration for every TWM component, with presets.

The `atari100k()` preset is the method exactly as the authors ran it: every value cites the line of
`jrobine/twm/twm/config.py` (through `shared/reference/method.md`, "§2.x") it reproduces. `REFERENCE` below is
the one place in the code where those numbers live; the preset is built from it and the tests check it against
method.md value by value.

Configs round-trip through `to_dict()` / `from_dict()` (plain JSON types only), and every impossible value raises
`ConfigError` naming the field (`dyn.num_heads must be > 0, got -1`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields, replace
from typing import Any


class ConfigError(ValueError):
    """An impossible configuration value; the message names the field."""


def _check(ok: bool, name: str, message: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{name} {message}, got {value!r}")


def _positive(obj: Any, section: str, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        _check(value > 0, f"{section}.{name}", "must be > 0", value)


def _non_negative(obj: Any, section: str, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        _check(value >= 0, f"{section}.{name}", "must be >= 0", value)


def _positive_dims(obj: Any, section: str, *names: str) -> None:
    for name in names:
        dims = getattr(obj, name)
        _check(all(d > 0 for d in dims), f"{section}.{name}", "must contain only sizes > 0", dims)


# ---------------------------------------------------------------------------------------------------------------------
# The reference hyperparameters, in one place (method.md §2; jrobine/twm twm/config.py).
# ---------------------------------------------------------------------------------------------------------------------
REFERENCE: dict[str, dict[str, Any]] = {
    "env": {
        "frame_size": 64,  # §2.2 env_frame_size
        "frame_skip": 4,  # §2.2 env_frame_skip (AtariPreprocessing, max-pools the last 2 frames)
        "frame_stack": 4,  # §2.2 env_frame_stack
        "grayscale": True,  # §2.2 env_grayscale
        "noop_max": 30,  # §2.2 env_noop_max (training env only; eval uses 0)
        "time_limit": 27000,  # §2.2 env_time_limit, in agent steps (108k frames)
        "episodic_lives": True,  # §2.2 env_episodic_lives
        "reward_transform": "tanh",  # §2.2 env_reward_transform
        "sticky_action_prob": 0.0,  # §2.2 sticky actions: none
        "discount_factor": 0.99,  # §2.2 env_discount_factor [γ]
        "discount_lambda": 0.95,  # §2.2 env_discount_lambda [λ]
    },
    "replay": {
        "capacity": 100_000,  # §2.1 buffer_capacity (= total env steps)
        "temperature": 20.0,  # §2.1 buffer_temperature [τ]
        "prefill": 5000,  # §2.1 buffer_prefill
    },
    "obs": {
        "z_categoricals": 32,  # §2.3
        "z_categories": 32,  # §2.3
        "channels": 48,  # §2.3 obs_channels (base width h)
        "mlp_dims": (512, 512),  # §4.1 encoder MLP 1536→512→512→1024
        "dropout": 0.0,  # §2.3 obs_dropout
        "decoder_init": "torch_default",  # quirk (nets.py:97): init_ skips ConvTranspose2d, see ObsModelConfig
        "lr": 1e-4,  # §2.3 obs_lr
        "weight_decay": 1e-6,  # §2.3 obs_wd
        "eps": 1e-5,  # §2.3 obs_eps
        "grad_clip": 100.0,  # §2.3 obs_grad_clip
        "decoder_coef": 1.0,  # §2.3 obs_decoder_coef
        "entropy_coef": 5.0,  # §2.3 obs_entropy_coef [α1]
        "entropy_threshold": 0.1,  # §2.3 obs_entropy_threshold
        "consistency_coef": 0.01,  # §2.3 obs_consistency_coef [α2]
    },
    "dyn": {
        "embed_dim": 256,  # §2.4 dyn_embed_dim
        "num_heads": 4,  # §2.4 dyn_num_heads
        "head_dim": 64,  # §2.4 dyn_head_dim
        "num_layers": 10,  # §2.4 dyn_num_layers
        "feedforward_dim": 1024,  # §2.4 dyn_feedforward_dim
        "z_dims": (512, 512, 512, 512),  # §2.4 dyn_z_dims
        "reward_dims": (256, 256, 256, 256),  # §2.4 dyn_reward_dims
        "discount_dims": (256, 256, 256, 256),  # §2.4 dyn_discount_dims
        "input_rewards": True,  # §2.4 dyn_input_rewards (tokens z, a, r)
        "dropout": 0.1,  # §2.4 dyn_dropout
        "memory_length": 16,  # §2.1 wm_memory_length (time steps)
        "attention_scale": "model_dim",  # §6.5 quirk 3: scores scaled by 1/sqrt(256), not 1/sqrt(64)
        "lr": 1e-4,  # §2.4 dyn_lr
        "weight_decay": 1e-6,  # §2.4 dyn_wd
        "eps": 1e-5,  # §2.4 dyn_eps
        "grad_clip": 100.0,  # §2.4 dyn_grad_clip
        "z_coef": 1.0,  # §2.4 dyn_z_coef
        "reward_coef": 10.0,  # §2.4 dyn_reward_coef [β1]
        "discount_coef": 50.0,  # §2.4 dyn_discount_coef [β2]
    },
    "ac": {
        "batch_size": 400,  # §2.5 ac_batch_size [M]
        "horizon": 15,  # §2.5 ac_horizon [H]
        "input_h": False,  # §2.5 ac_input_h: policy and value see z only
        "actor_dims": (512, 512, 512, 512),  # §2.5 actor_dims
        "critic_dims": (512, 512, 512, 512),  # §2.5 critic_dims
        "actor_lr": 1e-4,  # §2.5 actor_lr
        "actor_eps": 1e-5,  # §2.5 actor_eps
        "actor_weight_decay": 1e-6,  # §2.5 actor_wd
        "actor_grad_clip": 1.0,  # §2.5 actor_grad_clip
        "entropy_coef": 0.01,  # §2.5 actor_entropy_coef [η]
        "entropy_threshold": 0.1,  # §2.5 actor_entropy_threshold [Γ]
        "critic_lr": 1e-5,  # §2.5 critic_lr
        "critic_eps": 1e-5,  # §2.5 critic_eps
        "critic_weight_decay": 1e-6,  # §2.5 critic_wd
        "critic_grad_clip": 1.0,  # §2.5 critic_grad_clip
        "critic_target_interval": 1,  # §2.5 critic_target_interval: 1 = no target critic
        "discount_threshold": 0.1,  # §2.1 wm_discount_threshold: imagined "done" once Π ĝ < 0.1
    },
    "train": {
        "total_steps": 100_000,  # §2.1 buffer_capacity: the loop runs until the buffer holds 100k steps
        "wm_batch_size": 100,  # §2.1 wm_batch_size [N]
        "wm_sequence_length": 16,  # §2.1 wm_sequence_length [ℓ]
        "wm_train_steps": 1,  # §2.1 wm_train_steps
        "budget": 1e9,  # §2.1 budget (frames-per-update units; gives 125,000 training steps)
        "pretrain_budget": 5e7,  # §2.1 pretrain_budget
        "pretrain_obs_p": 0.6,  # §2.1 pretrain_obs_p
        "pretrain_dyn_p": 0.3,  # §2.1 pretrain_dyn_p
        "pretrain_ac_p": 0.7,  # §6.5 quirk 1: AC share coded as 1 - obs_p + dyn_p = 0.7 (meant 0.1)
        "eval_every": 5000,  # §2.1 eval_every
        "eval_episodes": 10,  # §2.1 eval_episodes
        "final_eval_episodes": 100,  # §2.1 final_eval_episodes
    },
}


@dataclass(frozen=True)
class EnvConfig:
    """The environment protocol (Atari 100k, method.md §2.2)."""

    game: str = "Pong"
    """Short game name (`Pong`, `MsPacman`, ...) or the built-in `Catch`."""
    frame_size: int = 64
    """Observations are `frame_size` × `frame_size`; the observation model is built for 64."""
    frame_skip: int = 4
    """Agent steps repeat the action this many emulator frames (max-pooling the last two)."""
    frame_stack: int = 4
    """Frames stacked into one observation (the encoder's input channels)."""
    grayscale: bool = True
    """Grayscale observations (the only mode the replay buffer stores)."""
    noop_max: int = 30
    """Up to this many no-ops after each training reset; evaluation uses none."""
    time_limit: int = 27000
    """Episode truncation, in agent steps."""
    episodic_lives: bool = True
    """During training, a lost life is a terminal transition (no reset until game over)."""
    reward_transform: str = "tanh"
    """Transform of stored rewards: `tanh` or `none`. Scores always use raw rewards."""
    sticky_action_prob: float = 0.0
    """ALE repeat_action_probability."""
    discount_factor: float = 0.99
    """γ: the discount target of non-terminal steps and the initial discount-head bias (a logit)."""
    discount_lambda: float = 0.95
    """λ of GAE(λ)."""

    def __post_init__(self) -> None:
        _positive(self, "env", "frame_size", "frame_skip", "frame_stack", "time_limit")
        _non_negative(self, "env", "noop_max")
        _check(self.frame_size == 64, "env.frame_size", "must be 64 (the encoder is built for 64×64)",
               self.frame_size)
        _check(self.grayscale, "env.grayscale", "must be true (frames are stored as 64×64 grayscale)",
               self.grayscale)
        _check(self.reward_transform in ("tanh", "none"), "env.reward_transform", "must be 'tanh' or 'none'",
               self.reward_transform)
        _check(0.0 <= self.sticky_action_prob < 1.0, "env.sticky_action_prob", "must be in [0, 1)",
               self.sticky_action_prob)
        _check(0.0 < self.discount_factor <= 1.0, "env.discount_factor", "must be in (0, 1]", self.discount_factor)
        _check(0.0 <= self.discount_lambda <= 1.0, "env.discount_lambda", "must be in [0, 1]", self.discount_lambda)
        _check(bool(self.game), "env.game", "must be a game name", self.game)


@dataclass(frozen=True)
class ReplayConfig:
    """Replay buffer and balanced sampling (paper Eq. 6, method.md §2.1)."""

    capacity: int = 100_000
    """Steps the buffer can hold."""
    temperature: float = 20.0
    """τ of softmax(-visits/τ); `math.inf` gives uniform sampling (ablation)."""
    prefill: int = 5000
    """Random-policy steps before any training."""

    def __post_init__(self) -> None:
        _positive(self, "replay", "capacity", "prefill", "temperature")
        _check(self.prefill <= self.capacity, "replay.prefill", "must be <= replay.capacity", self.prefill)


@dataclass(frozen=True)
class ObsModelConfig:
    """Observation model φ: CNN encoder, 32×32 categorical latents, transposed-CNN decoder (method.md §4.1)."""

    z_categoricals: int = 32
    """Number of categorical variables in z."""
    z_categories: int = 32
    """Classes per categorical variable."""
    channels: int = 48
    """Base width h of the CNNs: encoder h, 2h, 4h, 8h; decoder 16h → 4h, 2h, h."""
    mlp_dims: tuple[int, ...] = (512, 512)
    """Hidden sizes of the encoder MLP between the CNN features and the z logits."""
    dropout: float = 0.0
    """Dropout in the encoder MLP and the decoder's first layer."""
    decoder_init: str = "torch_default"
    """Init of the decoder's transposed convolutions. Quirk found in the reference code: its `init_` only touches
    `nn.Linear` and `nn.Conv2d`, and `ConvTranspose2d` is neither, so those layers keep PyTorch's default init and the
    intended final bias of 0.5 is never applied ('torch_default', what produced the published numbers).
    'kaiming' applies what method.md §4.1 describes: kaiming-uniform with the ReLU gain, linear gain on the last
    layer, final bias 0.5."""
    lr: float = 1e-4
    weight_decay: float = 1e-6
    """Plain L2 inside Adam (not AdamW), as in the reference."""
    eps: float = 1e-5
    grad_clip: float = 100.0
    decoder_coef: float = 1.0
    entropy_coef: float = 5.0
    """α1: weight of the hinge on the normalised latent entropy."""
    entropy_threshold: float = 0.1
    """Hinge threshold on the normalised entropy; >= 1 turns the hinge into plain entropy maximisation."""
    consistency_coef: float = 0.01
    """α2: weight of H(q_enc, p_dyn) on the encoder."""

    @property
    def z_dim(self) -> int:
        return self.z_categoricals * self.z_categories

    def __post_init__(self) -> None:
        _positive(self, "obs", "z_categoricals", "channels", "lr", "eps", "grad_clip")
        _check(self.z_categories > 1, "obs.z_categories", "must be > 1", self.z_categories)
        _positive_dims(self, "obs", "mlp_dims")
        _non_negative(self, "obs", "weight_decay", "decoder_coef", "entropy_coef", "entropy_threshold",
                      "consistency_coef")
        _check(0.0 <= self.dropout < 1.0, "obs.dropout", "must be in [0, 1)", self.dropout)
        _check(self.decoder_init in ("torch_default", "kaiming"), "obs.decoder_init",
               "must be 'torch_default' or 'kaiming'", self.decoder_init)


@dataclass(frozen=True)
class DynamicsConfig:
    """Dynamics model ψ: Transformer-XL over z, a, r tokens with MLP heads (method.md §4.2-4.3)."""

    embed_dim: int = 256
    num_heads: int = 4
    head_dim: int = 64
    num_layers: int = 10
    feedforward_dim: int = 1024
    z_dims: tuple[int, ...] = (512, 512, 512, 512)
    """Hidden sizes of the next-latent head."""
    reward_dims: tuple[int, ...] = (256, 256, 256, 256)
    discount_dims: tuple[int, ...] = (256, 256, 256, 256)
    input_rewards: bool = True
    """Feed rewards as tokens (z, a, r per step); False is the paper's 'no reward input' ablation (z, a)."""
    dropout: float = 0.1
    memory_length: int = 16
    """History in time steps: the attention window and the incremental path's memory (×tokens per step + 2)."""
    attention_scale: str = "model_dim"
    """Quirk (method.md §6.5.3): the reference scales scores by 1/sqrt(embed_dim) ('model_dim'), an effective
    softmax temperature of 2 for 4 heads of 64. 'head_dim' gives the textbook 1/sqrt(head_dim)."""
    lr: float = 1e-4
    weight_decay: float = 1e-6
    eps: float = 1e-5
    grad_clip: float = 100.0
    z_coef: float = 1.0
    reward_coef: float = 10.0
    """β1."""
    discount_coef: float = 50.0
    """β2."""
    z_loss_as_published: bool = False
    """Train ψ as the authors' published code does, not as the paper says (method.md §5.1 and §6.5 bug 7;
    jrobine/twm#4): there `compute_dynamics_loss` tests `'z' in preds` while `predict()` stores `z_dist`, so the
    next-latent term of Eq. 4 never reaches ψ and its z head keeps its initial weights. True: the z head is left out
    of ψ's optimizer (no step, no weight decay), the cross-entropy is not added to the dynamics loss (still logged
    as `z_pred_ce`, not as `z_pred_loss`) and `z_coef` has no effect. False (default, the paper): Eq. 4 in full.
    Not `z_coef=0`: that gives the z head zero gradients, and Adam's L2 weight decay then still shrinks it."""

    @property
    def tokens_per_step(self) -> int:
        return 3 if self.input_rewards else 2

    def __post_init__(self) -> None:
        _positive(self, "dyn", "embed_dim", "num_heads", "head_dim", "num_layers", "feedforward_dim",
                  "memory_length", "lr", "eps", "grad_clip")
        _positive_dims(self, "dyn", "z_dims", "reward_dims", "discount_dims")
        _non_negative(self, "dyn", "weight_decay", "z_coef", "reward_coef", "discount_coef")
        _check(0.0 <= self.dropout < 1.0, "dyn.dropout", "must be in [0, 1)", self.dropout)
        _check(self.attention_scale in ("model_dim", "head_dim"), "dyn.attention_scale",
               "must be 'model_dim' or 'head_dim'", self.attention_scale)
        _check(isinstance(self.z_loss_as_published, bool), "dyn.z_loss_as_published", "must be true or false",
               self.z_loss_as_published)


@dataclass(frozen=True)
class ActorCriticConfig:
    """Actor-critic θ trained in imagination (method.md §2.5, §5.2)."""

    batch_size: int = 400
    """M: imagined trajectories per update."""
    horizon: int = 15
    """H: imagined steps per trajectory."""
    input_h: bool = False
    """Policy and value on [z, h] instead of z (paper §3.3 ablation; the reference uses z only)."""
    actor_dims: tuple[int, ...] = (512, 512, 512, 512)
    critic_dims: tuple[int, ...] = (512, 512, 512, 512)
    actor_lr: float = 1e-4
    actor_eps: float = 1e-5
    actor_weight_decay: float = 1e-6
    actor_grad_clip: float = 1.0
    entropy_coef: float = 0.01
    """η of the thresholded entropy loss (paper Eq. 5)."""
    entropy_threshold: float = 0.1
    """Γ: the normalised policy entropy below which the penalty acts."""
    critic_lr: float = 1e-5
    critic_eps: float = 1e-5
    critic_weight_decay: float = 1e-6
    critic_grad_clip: float = 1.0
    critic_target_interval: int = 1
    """1: no target critic. N > 1: a hard copy every N updates (not an EMA)."""
    discount_threshold: float = 0.1
    """An imagined trajectory ends once its cumulative predicted discount falls below this."""

    def __post_init__(self) -> None:
        _positive(self, "ac", "batch_size", "horizon", "actor_lr", "actor_eps", "actor_grad_clip", "critic_lr",
                  "critic_eps", "critic_grad_clip", "critic_target_interval", "discount_threshold")
        _positive_dims(self, "ac", "actor_dims", "critic_dims")
        _non_negative(self, "ac", "actor_weight_decay", "critic_weight_decay", "entropy_coef")
        _check(0.0 <= self.entropy_threshold <= 1.0, "ac.entropy_threshold", "must be in [0, 1]",
               self.entropy_threshold)
        _check(self.discount_threshold < 1.0, "ac.discount_threshold", "must be < 1", self.discount_threshold)


@dataclass(frozen=True)
class TrainConfig:
    """The schedule of paper Algorithm 1 as implemented (method.md §3)."""

    total_steps: int = 100_000
    """Environment steps of the whole run (prefill included)."""
    wm_batch_size: int = 100
    """N: sequences per world-model batch."""
    wm_sequence_length: int = 16
    """ℓ: steps per sequence (plus one context step and the next observation)."""
    wm_train_steps: int = 1
    budget: float = 1e9
    """Total sample budget; training steps = (budget - pretrain_budget) / (N·ℓ·wm_train_steps + M·H)."""
    pretrain_budget: float = 5e7
    pretrain_obs_p: float = 0.6
    pretrain_dyn_p: float = 0.3
    pretrain_ac_p: float = 0.7
    """Quirk (method.md §6.5.1): the reference's actor-critic pretraining share is 1 - obs_p + dyn_p = 0.7,
    probably meant as 1 - (obs_p + dyn_p) = 0.1. 0.7 produced the published numbers."""
    eval_every: int = 5000
    eval_episodes: int = 10
    final_eval_episodes: int = 100
    log_every: int = 20
    """Env steps between metric rows (the reference logs every 20)."""
    checkpoint_every: int = 5000
    """Env steps between checkpoints (infrastructure: the reference saves only the final agent)."""
    keep_checkpoints: int = 5
    """Checkpoints kept on disk (the newest ones); older ones are pruned."""
    # Performance switches (infrastructure, not the method: none changes the maths beyond float rounding, except
    # amp; see twm_core/models/fastpaths.py and README "Performance"). Off by default: measured not to pay on a CPU,
    # or not measured on a GPU yet.
    amp: str = "none"
    """Mixed precision of the forward passes: 'none' (fp32, as the authors trained) or 'bf16' (torch.autocast;
    works on a CPU too, but is only fast where the CPU or GPU has bf16 units). Optimizer steps stay fp32."""
    compile: bool = False
    """torch.compile the convolution stacks and MLPs (not the Transformer-XL, whose key count changes every step)."""
    channels_last: bool = False
    """Feed the observation model's convolutions channels-last (NHWC) inputs."""
    fused_attention: bool = False
    """F.scaled_dot_product_attention where no attention maps are requested (slower than the explicit path on a
    CPU; with dropout active it draws its own dropout masks: same distribution, another random stream)."""

    def __post_init__(self) -> None:
        _positive(self, "train", "total_steps", "wm_batch_size", "wm_sequence_length", "wm_train_steps", "budget",
                  "eval_every", "log_every", "checkpoint_every", "keep_checkpoints")
        _non_negative(self, "train", "pretrain_budget", "pretrain_obs_p", "pretrain_dyn_p", "pretrain_ac_p",
                      "eval_episodes", "final_eval_episodes")
        _check(self.pretrain_budget < self.budget, "train.pretrain_budget", "must be < train.budget",
               self.pretrain_budget)
        _check(self.amp in ("none", "bf16"), "train.amp", "must be 'none' or 'bf16'", self.amp)


@dataclass(frozen=True)
class TWMConfig:
    """Everything a run needs; saved as `run_dir/config.json`."""

    env: EnvConfig = field(default_factory=EnvConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    obs: ObsModelConfig = field(default_factory=ObsModelConfig)
    dyn: DynamicsConfig = field(default_factory=DynamicsConfig)
    ac: ActorCriticConfig = field(default_factory=ActorCriticConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    preset: str = "atari100k"
    """Name of the preset this config was built from (informational)."""
    seed: int = 0
    deterministic: bool = False
    """Deterministic kernels (and cudnn.benchmark off); recorded for reproducibility."""

    def __post_init__(self) -> None:
        _check(self.replay.capacity >= self.train.total_steps, "replay.capacity", "must be >= train.total_steps",
               self.replay.capacity)
        _check(self.replay.prefill < self.train.total_steps, "replay.prefill", "must be < train.total_steps",
               self.replay.prefill)
        _check(self.dyn.memory_length >= 1, "dyn.memory_length", "must be >= 1", self.dyn.memory_length)
        _check(self.seed >= 0, "seed", "must be >= 0", self.seed)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists, inf becomes the string 'inf')."""
        return _to_plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TWMConfig:
        """Inverse of `to_dict`; unknown keys raise `ConfigError`."""
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in data:
                continue
            value = data[f.name]
            if f.name in _SECTIONS:
                value = _section_from_dict(f.name, value)
            kwargs[f.name] = value
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"unknown config keys: {sorted(unknown)}")
        return cls(**kwargs)

    def with_overrides(self, overrides: dict[str, Any]) -> TWMConfig:
        """A copy with dotted keys replaced, e.g. `{"dyn.num_layers": 2, "seed": 3}`; values may be strings."""
        data = self.to_dict()
        for key, value in overrides.items():
            parts = key.split(".")
            target = data
            for part in parts[:-1]:
                if not isinstance(target.get(part), dict):
                    raise ConfigError(f"unknown config key: {key}")
                target = target[part]
            if parts[-1] not in target:
                raise ConfigError(f"unknown config key: {key}")
            target[parts[-1]] = _coerce(key, value, target[parts[-1]])
        return TWMConfig.from_dict(data)


_SECTIONS: dict[str, type] = {
    "env": EnvConfig,
    "replay": ReplayConfig,
    "obs": ObsModelConfig,
    "dyn": DynamicsConfig,
    "ac": ActorCriticConfig,
    "train": TrainConfig,
}


def _to_plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_plain(v) for v in value]
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return value


def _section_from_dict(name: str, data: Any) -> Any:
    cls = _SECTIONS[name]
    if not isinstance(data, dict):
        raise ConfigError(f"{name} must be a mapping, got {data!r}")
    known = {f.name: f for f in fields(cls)}
    unknown = set(data) - set(known)
    if unknown:
        raise ConfigError(f"unknown config keys in {name}: {sorted(unknown)}")
    kwargs = {}
    for key, value in data.items():
        default = getattr(cls(), key) if key in known else None
        kwargs[key] = _coerce(f"{name}.{key}", value, default)
    try:
        return cls(**kwargs)
    except TypeError as e:  # pragma: no cover - defensive
        raise ConfigError(f"{name}: {e}") from e


def _coerce(name: str, value: Any, like: Any) -> Any:
    """Convert `value` (possibly a CLI string) to the type of the default `like`."""
    try:
        if isinstance(like, bool):
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if isinstance(like, int) and not isinstance(like, bool):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(float(value)) if isinstance(value, str) else int(value)
        if isinstance(like, float):
            return float(value)  # float("inf") parses 'inf'
        if isinstance(like, tuple):
            if isinstance(value, str):
                value = [v for v in value.replace("(", "").replace(")", "").split(",") if v.strip()]
            return tuple(int(v) for v in value)
        if isinstance(like, str):
            if not isinstance(value, str):
                raise ValueError(value)
            return value
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{name} has the wrong type: {value!r}") from e
    return value


# ---------------------------------------------------------------------------------------------------------------------
# Presets
# ---------------------------------------------------------------------------------------------------------------------
def atari100k(game: str = "Pong", seed: int = 0) -> TWMConfig:
    """The paper's method with the reference hyperparameters, exactly (method.md §2)."""
    r = REFERENCE
    return TWMConfig(
        env=EnvConfig(game=game, **r["env"]),
        replay=ReplayConfig(**r["replay"]),
        obs=ObsModelConfig(**r["obs"]),
        dyn=DynamicsConfig(**r["dyn"]),
        ac=ActorCriticConfig(**r["ac"]),
        train=TrainConfig(**r["train"]),
        preset="atari100k",
        seed=seed,
    )


def debug(game: str = "Pong", seed: int = 0) -> TWMConfig:
    """Tiny widths, 2 layers, short sequences and few steps: for CPU tests and smoke runs (not for results)."""
    base = atari100k(game, seed)
    return replace(
        base,
        replay=ReplayConfig(capacity=2000, temperature=20.0, prefill=100),
        obs=replace(base.obs, z_categoricals=8, z_categories=8, channels=8, mlp_dims=(64,)),
        dyn=replace(base.dyn, embed_dim=32, num_heads=2, head_dim=16, num_layers=2, feedforward_dim=64,
                    z_dims=(64,), reward_dims=(32,), discount_dims=(32,), memory_length=8),
        ac=replace(base.ac, batch_size=32, horizon=8, actor_dims=(64, 64), critic_dims=(64, 64)),
        train=replace(base.train, total_steps=2000, wm_batch_size=8, wm_sequence_length=8,
                      budget=2000 * (8 * 8 + 32 * 8) + 2e4, pretrain_budget=2e4,
                      eval_every=1000, eval_episodes=1, final_eval_episodes=2, checkpoint_every=100,
                      keep_checkpoints=3),
        preset="debug",
    )


def catch(game: str = "Catch", seed: int = 0) -> TWMConfig:
    """A small model for the built-in Catch game: shows on a CPU, in minutes, that the method learns.

    Not a paper preset: narrow networks, 4,000 env steps, 0.4 training steps per env step (train_every 2.5
    instead of 0.76) and learning rates raised for a run of ~1,400 updates (obs 1e-3, dyn 5e-4, actor 5e-4,
    critic 1e-3; with the reference rates the policy stays at chance that soon). Every loss, sampler and update
    rule is the reference's.
    """
    base = atari100k(game, seed)
    per_step = 12 * 8 + 64 * 10  # N·ℓ + M·H
    total, prefill, train_every = 4000, 500, 2.5
    return replace(
        base,
        replay=ReplayConfig(capacity=total, temperature=20.0, prefill=prefill),
        obs=replace(base.obs, z_categoricals=16, z_categories=16, channels=8, mlp_dims=(128,), lr=1e-3),
        dyn=replace(base.dyn, embed_dim=64, num_heads=2, head_dim=32, num_layers=2, feedforward_dim=128,
                    z_dims=(128,), reward_dims=(64,), discount_dims=(64,), memory_length=8, lr=5e-4),
        ac=replace(base.ac, batch_size=64, horizon=10, actor_dims=(128, 128), critic_dims=(128, 128),
                   actor_lr=5e-4, critic_lr=1e-3),
        train=replace(base.train, total_steps=total, wm_batch_size=12, wm_sequence_length=8,
                      budget=3e4 + (total - prefill) / train_every * per_step, pretrain_budget=3e4,
                      eval_every=1000, eval_episodes=10, final_eval_episodes=50, checkpoint_every=1000,
                      keep_checkpoints=3),
        preset="catch",
    )


PRESETS = {"atari100k": atari100k, "debug": debug, "catch": catch}


def make_config(preset: str, game: str | None = None, seed: int = 0,
                overrides: dict[str, Any] | None = None) -> TWMConfig:
    """Build a preset, set game and seed, then apply dotted overrides."""
    if preset not in PRESETS:
        raise ConfigError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    cfg = PRESETS[preset](game or "Pong", seed)
    return cfg.with_overrides(overrides or {})
