"""Fast paths against the plain paths, on fresh random inputs (issue #7): each must compute the same function up to
float rounding (the opt-in bf16 autocast only approximately), and the imagination must draw the same random stream.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from twm_core.ac_training import ActorCriticOptimizers, actor_critic_update
from twm_core.config import TWMConfig
from twm_core.imagination import (
    ImaginedTrajectory,
    discount_bookkeeping,
    imagine,
    select_starts,
)
from twm_core.models.actor_critic import ActorCritic
from twm_core.models.dynamics import DynamicsModel
from twm_core.models.fastpaths import apply_performance_settings, set_exact_fast_paths
from twm_core.models.layers import MLP, conv_transpose2d_1x1
from twm_core.models.observation import ObservationModel, preprocess_obs, sample_onehot
from twm_core.models.subpixel import conv_transpose2d_subpixel, subpixel_applies
from twm_core.models.transformer_xl import KVCache, RelativeMultiheadSelfAttention
from twm_core.optim import make_adam, use_fused
from twm_core.presets import debug
from twm_core.replay import ReplayBatch
from twm_core.wm_training import WorldModelOptimizers, world_model_update
from twm_core.world_model import WorldModel

NUM_ACTIONS = 5


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> None:
    diff = (a - b).abs().max().item()
    scale = max(b.abs().max().item(), 1.0)
    assert diff <= tol * scale, f"max abs diff {diff} (scale {scale})"


def _inputs(batch: int, time: int, seed: int, z_dim: int = 64, categories: int = 8, done_p: float = 0.2):
    g = torch.Generator().manual_seed(seed)
    z = F.one_hot(torch.randint(0, categories, (batch, time, z_dim // categories), generator=g), categories)
    a = torch.randint(0, NUM_ACTIONS, (batch, time), generator=g)
    r = torch.randn(batch, time - 1, generator=g)
    d = torch.rand(batch, time - 1, generator=g) < done_p
    return z.float().flatten(2), a, r, d


def _dynamics(seed: int = 0, **overrides) -> DynamicsModel:
    cfg = replace(debug().dyn, **overrides)
    torch.manual_seed(seed)
    return DynamicsModel(cfg, NUM_ACTIONS, 8, 8, 0.99)


def _steps(model: DynamicsModel, z, a, r, d, **kw):
    memory, outs = None, []
    for t in range(z.shape[1]):
        prev = {} if t == 0 else {"prev_rewards": r[:, t - 1:t], "prev_dones": d[:, t - 1:t]}
        out, memory = model.step(memory, z[:, t:t + 1], a[:, t:t + 1], **prev, **kw)
        outs.append(out)
    return outs, memory


def _set_fused(model: torch.nn.Module, on: bool) -> None:
    for m in model.modules():
        if isinstance(m, RelativeMultiheadSelfAttention):
            m.fused_attention = on


# --------------------------------------------------------------------------------------------- convolutions
def test_conv_transpose_of_a_1x1_input_is_a_matmul():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(7, 24, 1, 1, generator=g, requires_grad=True)
    w = torch.randn(24, 10, 5, 5, generator=g, requires_grad=True)
    b = torch.randn(10, generator=g, requires_grad=True)
    fast = conv_transpose2d_1x1(x, w, b)
    plain = F.conv_transpose2d(x, w, b, stride=2)
    _close(fast, plain)
    grad = torch.randn(plain.shape, generator=g)
    fast_grads = torch.autograd.grad(fast, (x, w, b), grad)
    plain_grads = torch.autograd.grad(plain, (x, w, b), grad)
    for f, p in zip(fast_grads, plain_grads, strict=True):
        _close(f, p)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize(("c_in", "c_out", "kernel", "size"), [(16, 4, 6, 30), (48, 4, 6, 30), (12, 3, 4, 7)])
def test_a_subpixel_transposed_convolution_matches_the_plain_one(channels_last, c_in, c_out, kernel, size):
    """Forward through one conv2d and a pixel shuffle (float rounding only, in the input's layout); the backward
    is the plain one's, so given the same output gradient the gradients are equal bit for bit."""
    g = torch.Generator().manual_seed(c_in + kernel)
    x = torch.randn(3, c_in, size, size, generator=g)
    x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
    w, b = torch.randn(c_in, c_out, kernel, kernel, generator=g), torch.randn(c_out, generator=g)
    fast_in = [t.clone().requires_grad_() for t in (x, w, b)]
    plain_in = [t.clone().requires_grad_() for t in (x, w, b)]
    fast, plain = conv_transpose2d_subpixel(*fast_in, 2), F.conv_transpose2d(*plain_in, stride=2)
    assert fast.shape == plain.shape
    assert fast.is_contiguous(memory_format=torch.channels_last) == channels_last
    _close(fast, plain)
    grad = torch.randn(plain.shape, generator=g)
    fast.backward(grad)
    plain.backward(grad)
    for f, p in zip(fast_in, plain_in, strict=True):
        assert torch.equal(f.grad, p.grad)
    with torch.no_grad():
        _close(conv_transpose2d_subpixel(x, w, b, 2), plain.detach())


@pytest.mark.parametrize("width", [16, 48])
def test_the_subpixel_path_takes_only_the_decoders_last_layer(width):
    """Where it measured faster: s²·C_out <= C_in holds for the last layer (h→4) alone, at catch and paper widths."""
    stack = ObservationModel(replace(debug().obs, channels=width)).decoder_cnn
    chosen = [subpixel_applies(c) for c in stack.convs]
    assert chosen == [False, False, False, True]


@pytest.mark.parametrize("channels_last", [False, True])
def test_observation_model_fast_path_and_channels_last_match_plain(channels_last):
    torch.manual_seed(0)
    model = ObservationModel(replace(debug().obs, channels=16))  # the reference layout at a small width
    obs = torch.randint(0, 256, (3, 2, 4, 64, 64), dtype=torch.uint8)
    z = F.one_hot(torch.randint(0, 8, (3, 2, 8)), 8).float().flatten(2)

    def run():
        model.zero_grad()
        logits, recon = model.encode(obs), model.decode(z)
        (logits.square().mean() + recon.square().mean()).backward()
        return logits.detach(), recon.detach(), [p.grad.clone() for p in model.parameters()]

    set_exact_fast_paths(model, False)
    plain = run()
    set_exact_fast_paths(model, True)
    for stack in (model.encoder_cnn, model.decoder_cnn):
        stack.channels_last = channels_last
    fast = run()
    _close(fast[0], plain[0])
    _close(fast[1], plain[1])
    for f, p in zip(fast[2], plain[2], strict=True):
        _close(f, p, 1e-4)


# --------------------------------------------------------------------------------------------- attention
@pytest.mark.parametrize("attention_scale", ["model_dim", "head_dim"])
def test_fused_attention_matches_explicit_in_training_forward_and_backward(attention_scale):
    model = _dynamics(seed=1, attention_scale=attention_scale, dropout=0.0).train()
    z, a, r, d = _inputs(4, 7, seed=2)

    def run(fused: bool):
        _set_fused(model, fused)
        model.zero_grad()
        out = model(z, a, r, d)
        (out.z_logits.square().mean() + out.reward.sum() + out.discount_logit.sum()).backward()
        return out, [p.grad.clone() for p in model.parameters()]

    explicit, explicit_grads = run(False)
    fused, fused_grads = run(True)
    for name in ("hidden", "z_logits", "reward", "discount_logit"):
        _close(getattr(fused, name), getattr(explicit, name))
    for f, e in zip(fused_grads, explicit_grads, strict=True):
        _close(f, e, 1e-4)  # the position term's gradient flows through SDPA's float mask too


def test_fused_attention_uses_the_model_dim_scale_quirk():
    attn = _dynamics(attention_scale="model_dim").transformer.layers[0].self_attn
    assert attn.scale == pytest.approx(1 / math.sqrt(debug().dyn.embed_dim))


def test_fused_attention_matches_explicit_on_the_kv_cache_path():
    model = _dynamics(seed=4, memory_length=3).eval()
    z, a, r, d = _inputs(3, 9, seed=5, done_p=0.3)
    with torch.no_grad():
        _set_fused(model, False)
        explicit, _ = _steps(model, z, a, r, d)
        _set_fused(model, True)
        fused, _ = _steps(model, z, a, r, d)
        with_maps, _ = _steps(model, z, a, r, d, return_attention=True)  # maps need the explicit path
    for f, e, m in zip(fused, explicit, with_maps, strict=True):
        for name in ("hidden", "z_logits", "reward", "discount_logit"):
            _close(getattr(f, name), getattr(e, name))
        assert m.attention is not None and f.attention is None


# --------------------------------------------------------------------------------------------- KV cache
def test_kv_cache_and_last_query_match_the_reference_memory_and_parallel_path():
    """The preallocated KV cache (with the a_t-only last layer) vs the reference's re-projected layer inputs and the
    parallel training path, over a sequence long enough to overflow and move the buffer."""
    model = _dynamics(seed=6, memory_length=4).eval()
    z, a, r, d = _inputs(5, 14, seed=7)
    with torch.no_grad():
        fast, memory = _steps(model, z, a, r, d)
        plain, _ = _steps(model, z, a, r, d, kv_cache=False)
        parallel = model(z, a, r, d)
    assert isinstance(memory.cache, KVCache) and memory.num_tokens == model.memory_tokens
    for name in ("hidden", "z_logits", "reward", "discount_logit"):
        inc = torch.cat([getattr(o, name) for o in fast], dim=1)
        _close(inc, torch.cat([getattr(o, name) for o in plain], dim=1))
        _close(inc, getattr(parallel, name))


def test_kv_cache_memory_can_be_branched_and_indexed():
    """Feeding an older memory again (a branch) must not corrupt the newer one that shares its buffers."""
    model = _dynamics(seed=8, memory_length=8).eval()
    z, a, r, d = _inputs(4, 6, seed=9, done_p=0.0)
    z2, a2, _, _ = _inputs(4, 6, seed=10, done_p=0.0)
    with torch.no_grad():
        _, memory = _steps(model, z[:, :3], a[:, :3], r, d)
        step = {"prev_rewards": r[:, 2:3], "prev_dones": d[:, 2:3]}
        out_a, mem_a = model.step(memory, z[:, 3:4], a[:, 3:4], **step)
        out_b, _ = model.step(memory, z2[:, 3:4], a2[:, 3:4], **step)  # a branch from the same memory
        next_a, _ = model.step(mem_a, z[:, 4:5], a[:, 4:5], prev_rewards=r[:, 3:4], prev_dones=d[:, 3:4])
        reference, _ = _steps(model, z[:, :5], a[:, :5], r, d, kv_cache=False)
        rows = torch.tensor([2, 0])
        picked, _ = model.step(mem_a.index(rows), z[rows, 4:5], a[rows, 4:5], prev_rewards=r[rows, 3:4],
                               prev_dones=d[rows, 3:4])
    _close(out_a.hidden, reference[3].hidden)
    _close(next_a.hidden, reference[4].hidden)
    _close(picked.hidden, reference[4].hidden[rows])
    assert not torch.allclose(out_b.hidden, out_a.hidden)


# --------------------------------------------------------------------------------------------- sampling
def test_sample_onehot_keeps_the_random_stream():
    """The one-hot sampler (division skipped at temperature 1, scatter instead of F.one_hot) draws exactly what
    the plain `F.one_hot(multinomial(softmax(logits / T)))` draws from the same generator state."""
    logits = torch.randn(50, 3, 8, 8)
    for temperature in (1.0, 0.5):
        torch.manual_seed(11)
        fast = sample_onehot(logits, temperature)
        torch.manual_seed(11)
        probs = (logits / temperature).softmax(-1)
        index = torch.multinomial(probs.reshape(-1, 8), 1).reshape(probs.shape[:-1])
        assert torch.equal(fast, F.one_hot(index, 8).float())
    assert torch.equal(sample_onehot(logits, 0.0), F.one_hot(logits.argmax(-1), 8).float())


# --------------------------------------------------------------------------------------------- imagination
def _imagine_plain(wm: WorldModel, ac: ActorCritic, start, horizon: int, sample_start_z, threshold: float,
                   ) -> ImaginedTrajectory:
    """The step-by-step loop with list appends, the reference's re-projected memory and no fast paths."""
    dyn = wm.dyn_model
    out, memory = dyn.step(None, start.z[:, :1], start.actions, kv_cache=False)
    z, h = start.z[:, 1:], out.hidden
    prev_r, prev_d = start.rewards, start.terminated | start.truncated
    cumulative = torch.ones_like(prev_r)
    zs, hs, acts, rewards, discounts, dones, weights = [z], [h], [], [], [], [], []
    for _ in range(horizon):
        logits = ac.logits(ac.inputs(z, h))
        a = torch.multinomial(logits.softmax(-1).reshape(-1, logits.shape[-1]), 1).reshape(logits.shape[:-1])
        out, memory = dyn.step(memory, z, a, prev_r, prev_d, kv_cache=False)
        probs = out.z_logits.softmax(-1)
        index = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1).reshape(probs.shape[:-1])
        next_z = F.one_hot(index, probs.shape[-1]).float().flatten(-2)
        r, g = out.reward, out.discount
        w, cumulative, d = discount_bookkeeping(cumulative, prev_d, g, threshold)
        if d.any():
            next_z[d[:, 0], 0] = sample_start_z(int(d.sum()))
        for lst, x in ((zs, next_z), (hs, out.hidden), (acts, a), (rewards, r), (discounts, g), (dones, d),
                       (weights, w)):
            lst.append(x)
        z, h, prev_r, prev_d = next_z, out.hidden, r, d
    cat = [torch.cat(x, 1) for x in (zs, hs, acts, rewards, discounts, dones, weights)]
    return ImaginedTrajectory(*cat)


@pytest.mark.parametrize("input_h", [False, True])
def test_imagine_fast_paths_give_the_plain_trajectory(input_h):
    cfg = debug()
    cfg = replace(cfg, ac=replace(cfg.ac, input_h=input_h))
    torch.manual_seed(0)
    wm, ac = WorldModel(cfg, NUM_ACTIONS).eval(), None
    ac = ActorCritic(cfg.ac, NUM_ACTIONS, wm.z_dim, wm.h_dim).eval()
    with torch.no_grad():
        wm.dyn_model.discount_head.linears[-1].bias.fill_(0.0)  # some rows end (and restart) within the horizon
    z, a, r, _ = _inputs(6, 9, seed=12)
    false = torch.zeros(6, 9, dtype=torch.bool)
    start = select_starts(z, a, torch.cat([r, r[:, :1]], 1), false, false, 24, torch.Generator().manual_seed(1))
    pool = _inputs(200, 2, seed=13)[0][:, 0]
    counter = {"n": 0}

    def sample_start_z(n: int) -> torch.Tensor:  # deterministic in call order
        counter["n"] += n
        return pool[counter["n"] - n:counter["n"]]

    torch.manual_seed(21)
    fast = imagine(wm, ac, start, 7, sample_start_z, 0.1)
    used, counter["n"] = counter["n"], 0
    torch.manual_seed(21)
    with torch.no_grad():
        set_exact_fast_paths(wm, False)
        plain = _imagine_plain(wm, ac, start, 7, sample_start_z, 0.1)
    assert counter["n"] == used > 0  # restarts happened, as many in both
    for name in ("z", "actions", "dones"):
        assert torch.equal(getattr(fast, name), getattr(plain, name)), name
    for name in ("hidden", "rewards", "discounts", "weights"):
        _close(getattr(fast, name), getattr(plain, name))


# --------------------------------------------------------------------------------------------- opt-in settings
def _batch(cfg: TWMConfig, seed: int) -> ReplayBatch:
    g = torch.Generator().manual_seed(seed)
    b, t = cfg.train.wm_batch_size, cfg.train.wm_sequence_length + 1
    return ReplayBatch(obs=torch.randint(0, 256, (b, t + 1, 4, 64, 64), dtype=torch.uint8, generator=g),
                       actions=torch.randint(0, NUM_ACTIONS, (b, t), generator=g),
                       rewards=torch.randn(b, t, generator=g).tanh(),
                       terminated=torch.rand(b, t, generator=g) < 0.05, truncated=torch.zeros(b, t, dtype=torch.bool))


def _losses_after_one_update(cfg: TWMConfig) -> dict[str, float]:
    torch.manual_seed(0)
    wm = WorldModel(cfg, NUM_ACTIONS)
    ac = ActorCritic(cfg.ac, NUM_ACTIONS, wm.z_dim, wm.h_dim)
    wm_opt, ac_opt = WorldModelOptimizers.create(wm), ActorCriticOptimizers.create(ac)
    torch.manual_seed(1)
    batch = _batch(cfg, 2)
    z, wm_metrics = world_model_update(wm, wm_opt, batch)
    start = select_starts(z, batch.actions, batch.rewards, batch.terminated, batch.truncated, cfg.ac.batch_size,
                          torch.Generator().manual_seed(3))
    traj = imagine(wm, ac, start, cfg.ac.horizon, lambda n: z[0, :1].expand(n, -1), cfg.ac.discount_threshold)
    ac_metrics = actor_critic_update(ac, ac_opt, traj, cfg.env.discount_lambda, 1)
    return {k: float(v) for k, v in {**wm_metrics, **ac_metrics}.items()}


def test_bf16_autocast_on_cpu_gives_finite_losses_close_to_fp32():
    """amp='bf16' runs on a CPU (torch.autocast('cpu')): losses finite and close to fp32 (bf16 keeps 8 bits of
    mantissa, so only loosely)."""
    cfg = replace(debug(), train=replace(debug().train, wm_batch_size=4))
    fp32 = _losses_after_one_update(cfg)
    bf16 = _losses_after_one_update(replace(cfg, train=replace(cfg.train, amp="bf16")))
    for key in ("dec_loss", "z_pred_loss", "reward_loss", "discount_loss", "obs_loss", "critic_loss",
                "actor_loss"):
        present = [k for k in fp32 if k.endswith(key)]
        for k in present:
            assert math.isfinite(bf16[k]), k
            assert bf16[k] == pytest.approx(fp32[k], rel=0.1, abs=0.05), (k, bf16[k], fp32[k])
    assert any(k.endswith("dec_loss") for k in fp32) and any(k.endswith("critic_loss") for k in fp32)


def test_channels_last_preprocessing_keeps_the_values_in_the_convolutions_layout():
    obs = torch.randint(0, 256, (3, 2, 4, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(5))
    plain, frames_last = preprocess_obs(obs), preprocess_obs(obs, channels_last=True)
    assert torch.equal(plain, frames_last) and frames_last.shape == plain.shape
    assert frames_last.flatten(0, 1).is_contiguous(memory_format=torch.channels_last)  # no copy for the encoder


def test_a_channels_last_update_matches_the_plain_one():
    """`train.channels_last` (NHWC frames from preprocessing to the decoder loss) computes the same update."""
    cfg = replace(debug(), train=replace(debug().train, wm_batch_size=4))
    plain = _losses_after_one_update(cfg)
    fast = _losses_after_one_update(replace(cfg, train=replace(cfg.train, channels_last=True)))
    assert plain.keys() == fast.keys() and "recon_mae" in plain
    for key, value in plain.items():
        assert fast[key] == pytest.approx(value, rel=1e-4, abs=1e-5), key


def test_apply_performance_settings_sets_flags_idempotently():
    cfg = debug()
    torch.manual_seed(0)
    wm = WorldModel(cfg, NUM_ACTIONS)
    ac = ActorCritic(cfg.ac, NUM_ACTIONS, wm.z_dim, wm.h_dim)
    on = replace(cfg.train, amp="bf16", channels_last=True, fused_attention=True)
    apply_performance_settings(on, wm, ac)
    assert ac.amp == "bf16" and wm.obs_model.encoder_cnn.channels_last
    assert all(m.fused_attention for m in wm.modules() if isinstance(m, RelativeMultiheadSelfAttention))
    apply_performance_settings(on, wm, ac)  # no-op
    apply_performance_settings(cfg.train, wm, ac)
    assert ac.amp == "none" and not wm.obs_model.decoder_cnn.channels_last
    assert not any(m.fused_attention for m in wm.modules() if isinstance(m, RelativeMultiheadSelfAttention))


@pytest.mark.slow
def test_compiled_module_matches_eager():
    """train.compile: torch.compile of a small MLP (as applied to every MLP and ConvStack) equals eager."""
    torch.manual_seed(0)
    mlp = MLP(16, (32, 32), 8, pre_activation=True)
    x = torch.randn(5, 16)
    eager = mlp(x)
    mlp.compile()
    _close(mlp(x), eager)
    assert set(mlp.state_dict()) == {f"linears.{i}.{p}" for i in range(3) for p in ("weight", "bias")}



# --------------------------------------------------------------------------------------------- optimizers
def test_fused_adam_matches_the_default_loop_with_l2_weight_decay():
    """make_adam's fused Adam takes the default implementation's steps (same lr, eps, L2 weight decay)."""
    torch.manual_seed(0)
    plain_model = MLP(16, (32, 32), 8, pre_activation=True)
    fused_model = MLP(16, (32, 32), 8, pre_activation=True)
    fused_model.load_state_dict(plain_model.state_dict())
    initial = [p.detach().clone() for p in plain_model.parameters()]
    fused = make_adam(fused_model.parameters(), lr=1e-3, eps=1e-5, weight_decay=1e-2)
    plain = torch.optim.Adam(plain_model.parameters(), lr=1e-3, eps=1e-5, weight_decay=1e-2, betas=(0.9, 0.999),
                             foreach=False)
    assert all(group["fused"] for group in fused.param_groups)
    for step in range(20):
        x = torch.randn(7, 16, generator=torch.Generator().manual_seed(step))
        for model, opt in ((plain_model, plain), (fused_model, fused)):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
    for f, p, p0 in zip(fused_model.parameters(), plain_model.parameters(), initial, strict=True):
        assert (p - p0).abs().max() > 1e-3  # 20 steps of lr 1e-3 moved every parameter
        _close(f, p, 1e-6)


def test_a_restored_optimizer_goes_back_to_the_fused_path():
    """A checkpoint's optimizer state from before make_adam fused restores `fused: None`; use_fused resets it."""
    model = MLP(4, (8,), 2)
    old = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.ones(1, 4)).sum().backward()
    old.step()
    restored = make_adam(model.parameters(), lr=1e-3, eps=1e-8, weight_decay=0.0)
    restored.load_state_dict(old.state_dict())
    assert not restored.param_groups[0]["fused"]
    use_fused(restored)
    assert restored.param_groups[0]["fused"] and restored.param_groups[0]["foreach"] is None
    restored.step()  # the fused kernel takes the restored moments
    assert restored.state[next(iter(model.parameters()))]["step"].item() == 2
