"""The sections of a run's config (env, replay, obs, dyn, ac, train): frozen dataclasses whose defaults are the
reference hyperparameters, each default of a method field citing its source (`shared/reference/method.md` "§2.x",
i.e. a line of `jrobine/twm/twm/config.py`). `twm_core.config.TWMConfig` holds one of each; read configs through it.
Every `__post_init__` checks ranges and raises `ConfigError` naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BeforeValidator, ConfigDict


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


def _split_dims(value: Any) -> Any:
    """`"512,512"` or `"(512, 512)"` (a CLI string) -> `["512", "512"]`, which pydantic then reads as ints."""
    if isinstance(value, str):
        return [part for part in value.replace("(", "").replace(")", "").split(",") if part.strip()]
    return value


Dims = Annotated[tuple[int, ...], BeforeValidator(_split_dims)]
"""Layer sizes: a tuple of ints (a list in JSON, `512,512` on a command line)."""
_PARSE = ConfigDict(extra="forbid", use_attribute_docstrings=True)
"""How pydantic reads every section: unknown keys are errors; field docstrings describe the JSON schema."""


@dataclass(frozen=True)
class EnvConfig:
    """The environment protocol (Atari 100k, method.md §2.2)."""

    __pydantic_config__ = _PARSE

    game: str = "Pong"
    """Short game name (`Pong`, `MsPacman`, ...) or the built-in `Catch`."""
    frame_size: int = 64  # §2.2 env_frame_size
    """Observations are `frame_size` × `frame_size`; the observation model is built for 64."""
    frame_skip: int = 4  # §2.2 env_frame_skip (AtariPreprocessing, max-pools the last 2 frames)
    """Agent steps repeat the action this many emulator frames (max-pooling the last two)."""
    frame_stack: int = 4  # §2.2 env_frame_stack
    """Frames stacked into one observation (the encoder's input channels)."""
    grayscale: bool = True  # §2.2 env_grayscale
    """Grayscale observations (the only mode the replay buffer stores)."""
    noop_max: int = 30  # §2.2 env_noop_max (training env only; eval uses 0)
    """Up to this many no-ops after each training reset; evaluation uses none."""
    time_limit: int = 27000  # §2.2 env_time_limit, in agent steps (108k frames)
    """Episode truncation, in agent steps."""
    episodic_lives: bool = True  # §2.2 env_episodic_lives
    """During training, a lost life is a terminal transition (no reset until game over)."""
    reward_transform: str = "tanh"  # §2.2 env_reward_transform
    """Transform of stored rewards: `tanh` or `none`. Scores always use raw rewards."""
    sticky_action_prob: float = 0.0  # §2.2 sticky actions: none
    """ALE repeat_action_probability."""
    discount_factor: float = 0.99  # §2.2 env_discount_factor [γ]
    """γ: the discount target of non-terminal steps and the initial discount-head bias (a logit)."""
    discount_lambda: float = 0.95  # §2.2 env_discount_lambda [λ]
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

    __pydantic_config__ = _PARSE

    capacity: int = 100_000  # §2.1 buffer_capacity (= total env steps)
    """Steps the buffer can hold."""
    temperature: float = 20.0  # §2.1 buffer_temperature [τ]
    """τ of softmax(-visits/τ); `math.inf` gives uniform sampling (ablation)."""
    prefill: int = 5000  # §2.1 buffer_prefill
    """Random-policy steps before any training."""

    def __post_init__(self) -> None:
        _positive(self, "replay", "capacity", "prefill", "temperature")
        _check(self.prefill <= self.capacity, "replay.prefill", "must be <= replay.capacity", self.prefill)


@dataclass(frozen=True)
class ObsModelConfig:
    """Observation model φ: CNN encoder, 32×32 categorical latents, transposed-CNN decoder (method.md §4.1)."""

    __pydantic_config__ = _PARSE

    z_categoricals: int = 32  # §2.3
    """Number of categorical variables in z."""
    z_categories: int = 32  # §2.3
    """Classes per categorical variable."""
    channels: int = 48  # §2.3 obs_channels (base width h)
    """Base width h of the CNNs: encoder h, 2h, 4h, 8h; decoder 16h → 4h, 2h, h."""
    mlp_dims: Dims = (512, 512)  # §4.1 encoder MLP 1536→512→512→1024
    """Hidden sizes of the encoder MLP between the CNN features and the z logits."""
    dropout: float = 0.0  # §2.3 obs_dropout
    """Dropout in the encoder MLP and the decoder's first layer."""
    decoder_init: str = "torch_default"  # quirk (nets.py:97): init_ skips ConvTranspose2d, see ObsModelConfig
    """Init of the decoder's transposed convolutions. Quirk found in the reference code: its `init_` only touches
    `nn.Linear` and `nn.Conv2d`, and `ConvTranspose2d` is neither, so those layers keep PyTorch's default init and the
    intended final bias of 0.5 is never applied ('torch_default', what produced the published numbers).
    'kaiming' applies what method.md §4.1 describes: kaiming-uniform with the ReLU gain, linear gain on the last
    layer, final bias 0.5."""
    lr: float = 1e-4  # §2.3 obs_lr
    weight_decay: float = 1e-6  # §2.3 obs_wd
    """Plain L2 inside Adam (not AdamW), as in the reference."""
    eps: float = 1e-5  # §2.3 obs_eps
    grad_clip: float = 100.0  # §2.3 obs_grad_clip
    decoder_coef: float = 1.0  # §2.3 obs_decoder_coef
    entropy_coef: float = 5.0  # §2.3 obs_entropy_coef [α1]
    """α1: weight of the hinge on the normalised latent entropy."""
    entropy_threshold: float = 0.1  # §2.3 obs_entropy_threshold
    """Hinge threshold on the normalised entropy; >= 1 turns the hinge into plain entropy maximisation."""
    consistency_coef: float = 0.01  # §2.3 obs_consistency_coef [α2]
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

    __pydantic_config__ = _PARSE

    embed_dim: int = 256  # §2.4 dyn_embed_dim
    num_heads: int = 4  # §2.4 dyn_num_heads
    head_dim: int = 64  # §2.4 dyn_head_dim
    num_layers: int = 10  # §2.4 dyn_num_layers
    feedforward_dim: int = 1024  # §2.4 dyn_feedforward_dim
    z_dims: Dims = (512, 512, 512, 512)  # §2.4 dyn_z_dims
    """Hidden sizes of the next-latent head."""
    reward_dims: Dims = (256, 256, 256, 256)  # §2.4 dyn_reward_dims
    discount_dims: Dims = (256, 256, 256, 256)  # §2.4 dyn_discount_dims
    input_rewards: bool = True  # §2.4 dyn_input_rewards (tokens z, a, r)
    """Feed rewards as tokens (z, a, r per step); False is the paper's 'no reward input' ablation (z, a)."""
    dropout: float = 0.1  # §2.4 dyn_dropout
    memory_length: int = 16  # §2.1 wm_memory_length (time steps)
    """History in time steps: the attention window and the incremental path's memory (×tokens per step + 2)."""
    attention_scale: str = "model_dim"  # §6.5 quirk 3: scores scaled by 1/sqrt(256), not 1/sqrt(64)
    """Quirk (method.md §6.5.3): the reference scales scores by 1/sqrt(embed_dim) ('model_dim'), an effective
    softmax temperature of 2 for 4 heads of 64. 'head_dim' gives the textbook 1/sqrt(head_dim)."""
    lr: float = 1e-4  # §2.4 dyn_lr
    weight_decay: float = 1e-6  # §2.4 dyn_wd
    eps: float = 1e-5  # §2.4 dyn_eps
    grad_clip: float = 100.0  # §2.4 dyn_grad_clip
    z_coef: float = 1.0  # §2.4 dyn_z_coef
    reward_coef: float = 10.0  # §2.4 dyn_reward_coef [β1]
    """β1."""
    discount_coef: float = 50.0  # §2.4 dyn_discount_coef [β2]
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

    __pydantic_config__ = _PARSE

    batch_size: int = 400  # §2.5 ac_batch_size [M]
    """M: imagined trajectories per update."""
    horizon: int = 15  # §2.5 ac_horizon [H]
    """H: imagined steps per trajectory."""
    input_h: bool = False  # §2.5 ac_input_h: policy and value see z only
    """Policy and value on [z, h] instead of z (paper §3.3 ablation; the reference uses z only)."""
    actor_dims: Dims = (512, 512, 512, 512)  # §2.5 actor_dims
    critic_dims: Dims = (512, 512, 512, 512)  # §2.5 critic_dims
    actor_lr: float = 1e-4  # §2.5 actor_lr
    actor_eps: float = 1e-5  # §2.5 actor_eps
    actor_weight_decay: float = 1e-6  # §2.5 actor_wd
    actor_grad_clip: float = 1.0  # §2.5 actor_grad_clip
    entropy_coef: float = 0.01  # §2.5 actor_entropy_coef [η]
    """η of the thresholded entropy loss (paper Eq. 5)."""
    entropy_threshold: float = 0.1  # §2.5 actor_entropy_threshold [Γ]
    """Γ: the normalised policy entropy below which the penalty acts."""
    critic_lr: float = 1e-5  # §2.5 critic_lr
    critic_eps: float = 1e-5  # §2.5 critic_eps
    critic_weight_decay: float = 1e-6  # §2.5 critic_wd
    critic_grad_clip: float = 1.0  # §2.5 critic_grad_clip
    critic_target_interval: int = 1  # §2.5 critic_target_interval: 1 = no target critic
    """1: no target critic. N > 1: a hard copy every N updates (not an EMA)."""
    discount_threshold: float = 0.1  # §2.1 wm_discount_threshold: imagined "done" once Π ĝ < 0.1
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

    __pydantic_config__ = _PARSE

    total_steps: int = 100_000  # §2.1 buffer_capacity: the loop runs until the buffer holds 100k steps
    """Environment steps of the whole run (prefill included)."""
    wm_batch_size: int = 100  # §2.1 wm_batch_size [N]
    """N: sequences per world-model batch."""
    wm_sequence_length: int = 16  # §2.1 wm_sequence_length [ℓ]
    """ℓ: steps per sequence (plus one context step and the next observation)."""
    wm_train_steps: int = 1  # §2.1 wm_train_steps
    budget: float = 1e9  # §2.1 budget (frames-per-update units; gives 125,000 training steps)
    """Total sample budget; training steps = (budget - pretrain_budget) / (N·ℓ·wm_train_steps + M·H)."""
    pretrain_budget: float = 5e7  # §2.1 pretrain_budget
    pretrain_obs_p: float = 0.6  # §2.1 pretrain_obs_p
    pretrain_dyn_p: float = 0.3  # §2.1 pretrain_dyn_p
    pretrain_ac_p: float = 0.7  # §6.5 quirk 1: AC share coded as 1 - obs_p + dyn_p = 0.7 (meant 0.1)
    """Quirk (method.md §6.5.1): the reference's actor-critic pretraining share is 1 - obs_p + dyn_p = 0.7,
    probably meant as 1 - (obs_p + dyn_p) = 0.1. 0.7 produced the published numbers."""
    eval_every: int = 5000  # §2.1 eval_every
    eval_episodes: int = 10  # §2.1 eval_episodes
    final_eval_episodes: int = 100  # §2.1 final_eval_episodes
    log_every: int = 20
    """Env steps between metric rows (the reference logs every 20)."""
    # Checkpoints and snapshots: infrastructure, not the method (the reference saves only the final agent).
    checkpoint_every: int = 5000
    """Env steps between full checkpoints, counted from the last one (the first after pretraining): one is saved
    during collection at the step where the gap is reached, after the evaluation of that step if there is one, so a
    checkpoint and an evaluation at one step hold the same weights when `eval_every` is a multiple of this."""
    keep_checkpoints: int = 5
    """Full checkpoints kept on disk (the newest ones: the newest is the resume point); older ones are pruned."""
    keep_every: int = 0
    """Also keep every full checkpoint whose step is a multiple of this (0: none) from pruning."""
    snapshots: int = 8
    """Weights-only snapshots (`ckpt/snap_*.pt`, for the checkpoint film) at this many log-spaced steps from the
    prefill to `total_steps` (`twm_core.training_state.snapshot_steps`; 0: none). Never pruned."""
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
                      "eval_episodes", "final_eval_episodes", "keep_every", "snapshots")
        _check(self.pretrain_budget < self.budget, "train.pretrain_budget", "must be < train.budget",
               self.pretrain_budget)
        _check(self.amp in ("none", "bf16"), "train.amp", "must be 'none' or 'bf16'", self.amp)
