"""Transformer-XL dynamics: incremental == parallel, masks, attention, heads and init facts."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from twm_core.models.dynamics import DynamicsModel, attention_mask
from twm_core.presets import atari100k, debug

NUM_ACTIONS = 5


def _model(memory_length=8, input_rewards=True, seed=0, **kw):
    cfg = replace(debug().dyn, memory_length=memory_length, input_rewards=input_rewards, **kw)
    torch.manual_seed(seed)
    return DynamicsModel(cfg, NUM_ACTIONS, 8, 8, 0.99).eval()


def _inputs(batch, time, seed=1, done_p=0.2):
    g = torch.Generator().manual_seed(seed)
    z = F.one_hot(torch.randint(0, 8, (batch, time, 8), generator=g), 8).float().flatten(2)
    a = torch.randint(0, NUM_ACTIONS, (batch, time), generator=g)
    r = torch.randn(batch, time - 1, generator=g)
    d = torch.rand(batch, time - 1, generator=g) < done_p
    return z, a, r, d


def _incremental(model, z, a, r, d, return_attention=False, kv_cache=True):
    memory, outs = None, []
    for t in range(z.shape[1]):
        prev_r = None if t == 0 else r[:, t - 1:t]
        prev_d = None if t == 0 else d[:, t - 1:t]
        out, memory = model.step(memory, z[:, t:t + 1], a[:, t:t + 1], prev_r, prev_d, return_attention, kv_cache)
        outs.append(out)
    return outs


@pytest.mark.parametrize("kv_cache", [True, False])
@pytest.mark.parametrize(("memory_length", "time", "input_rewards"),
                         [(8, 6, True), (3, 10, True), (16, 17, True), (4, 9, False)])
def test_incremental_equals_parallel(memory_length, time, input_rewards, kv_cache):
    model = _model(memory_length, input_rewards)
    z, a, r, d = _inputs(4, time)
    with torch.no_grad():
        parallel = model(z, a, r, d)
        steps = _incremental(model, z, a, r, d, kv_cache=kv_cache)
    for name in ("hidden", "z_logits", "reward", "discount_logit"):
        inc = torch.cat([getattr(o, name) for o in steps], dim=1)
        diff = (inc - getattr(parallel, name)).abs().max().item()
        assert diff <= 1e-5, f"{name}: max abs diff {diff}"


def test_memory_is_bounded_and_detached():
    model = _model(memory_length=3).train()
    z, a, r, d = _inputs(2, 12)
    memory = None
    for t in range(12):
        _, memory = model.step(memory, z[:, t:t + 1], a[:, t:t + 1], None if t == 0 else r[:, t - 1:t],
                               None if t == 0 else d[:, t - 1:t])
    assert memory.num_tokens == 3 * 3 + 2
    assert all(not t.requires_grad for k, v in memory.layers for t in (k, v))
    assert len(memory.layers) == model.cfg.num_layers and memory.dones.shape == (2, 4)


def test_kv_cache_computes_the_plain_path_function():
    """Fast path (cached keys/values) vs the reference's re-projected layer inputs, on fresh random inputs, with
    a memory shorter than the sequence so that trimming is exercised."""
    model = _model(memory_length=3, seed=5)
    z, a, r, d = _inputs(3, 12, seed=9, done_p=0.3)
    with torch.no_grad():
        fast = _incremental(model, z, a, r, d, return_attention=True, kv_cache=True)
        plain = _incremental(model, z, a, r, d, return_attention=True, kv_cache=False)
    for f, p in zip(fast, plain, strict=True):
        for name in ("hidden", "z_logits", "reward", "discount_logit", "attention"):
            diff = (getattr(f, name) - getattr(p, name)).abs().max().item()
            assert diff <= 1e-5, f"{name}: {diff}"


def test_future_tokens_do_not_change_outputs():
    model = _model()
    z, a, r, d = _inputs(3, 8, done_p=0.0)
    with torch.no_grad():
        base = model(z, a, r, d).hidden
        z2, a2, r2 = z.clone(), a.clone(), r.clone()
        z2[:, 5:] = z2[:, 5:].flip(-1)
        a2[:, 5:] = (a2[:, 5:] + 1) % NUM_ACTIONS
        r2[:, 4:] += 3.0  # r_4 is a token after a_4, so h_4 must not see it
        out = model(z2, a2, r2, d).hidden
    assert torch.allclose(out[:, :5], base[:, :5], atol=1e-6)
    assert not torch.allclose(out[:, 5:], base[:, 5:], atol=1e-3)


def test_tokens_before_an_episode_boundary_are_invisible():
    model = _model()
    z, a, r, _ = _inputs(2, 8)
    d = torch.zeros(2, 7, dtype=torch.bool)
    d[:, 3] = True  # step 3 ended an episode: steps 4.. start a new one
    with torch.no_grad():
        base = model(z, a, r, d).hidden
        z2, a2, r2 = z.clone(), a.clone(), r.clone()
        z2[:, :4] = z2[:, :4].flip(-1)
        a2[:, :4] = (a2[:, :4] + 2) % NUM_ACTIONS
        r2[:, :4] -= 2.0
        out = model(z2, a2, r2, d).hidden
    assert torch.allclose(out[:, 4:], base[:, 4:], atol=1e-6)
    assert not torch.allclose(out[:, :4], base[:, :4], atol=1e-3)


def test_attention_rows_sum_to_one_and_are_zero_on_masked_keys():
    model = _model()
    z, a, r, d = _inputs(3, 7, done_p=0.3)
    with torch.no_grad():
        out = model(z, a, r, d, return_attention=True)
    att = out.attention  # (B, L, H, T, S)
    num_tokens = 7 * 3 - 1
    assert att.shape == (3, model.cfg.num_layers, model.cfg.num_heads, num_tokens, num_tokens)
    assert torch.allclose(att.sum(-1), torch.ones(()), atol=1e-5)
    mask = attention_mask(num_tokens, num_tokens, 3, model.cfg.memory_length, d)  # (B, T, S)
    assert (att.masked_select(mask[:, None, None]) == 0).all()
    assert (att.masked_select(~mask[:, None, None]) > 0).all()


def test_return_attention_leaves_outputs_unchanged():
    model = _model()
    z, a, r, d = _inputs(2, 6)
    with torch.no_grad():
        plain, with_att = model(z, a, r, d), model(z, a, r, d, return_attention=True)
        steps_plain = _incremental(model, z, a, r, d)
        steps_att = _incremental(model, z, a, r, d, return_attention=True)
    assert plain.attention is None and with_att.attention is not None
    assert torch.equal(plain.hidden, with_att.hidden) and torch.equal(plain.z_logits, with_att.z_logits)
    for p, q in zip(steps_plain, steps_att, strict=True):
        assert torch.equal(p.hidden, q.hidden) and q.attention.shape[3] == (2 if p is steps_plain[0] else 3)


def test_attention_mask_window_matches_reference_rule():
    """With a full memory (53 keys), a_t sees 52 tokens, z_t all 53, r_{t-1} from the oldest z (nets.py:537-552)."""
    mask = attention_mask(3, 53, 3, 16, torch.zeros(1, 17, dtype=torch.bool))[0]
    assert (~mask).sum(-1).tolist() == [51, 52, 52]  # r_{t-1} (index 50), z_t (51), a_t (52): visible counts
    assert mask[2, 0] and not mask[1, 0] and not mask[0, 0]


def test_attention_scale_quirk():
    ref = _model(attention_scale="model_dim").transformer.layers[0].self_attn.scale
    textbook = _model(attention_scale="head_dim").transformer.layers[0].self_attn.scale
    dyn = debug().dyn
    assert ref == pytest.approx(1 / math.sqrt(dyn.embed_dim))
    assert textbook == pytest.approx(1 / math.sqrt(dyn.head_dim))


def test_reference_shapes_and_head_init():
    cfg = atari100k()
    model = DynamicsModel(cfg.dyn, 6, 32, 32, cfg.env.discount_factor)
    assert model.discount_head.linears[-1].bias.item() == pytest.approx(0.99)
    assert model.reward_head.linears[-1].bias.item() == 0.0
    assert [l.out_features for l in model.z_head.linears] == [512] * 4 + [1024]
    assert model.memory_tokens == 50
    t = model.transformer
    assert len(t.layers) == 10 and t.u_bias.shape == (4, 64)
    attn = t.layers[0].self_attn
    assert attn.qkv_proj.weight.shape == (3 * 256, 256) and attn.qkv_proj.bias is None
    assert t.layers[0].linear1.out_features == 1024
    z, a, r, d = torch.zeros(2, 17, 1024), torch.zeros(2, 17, dtype=torch.long), torch.zeros(2, 16), \
        torch.zeros(2, 16, dtype=torch.bool)
    out = model.eval()(z, a, r, d)
    assert out.hidden.shape == (2, 17, 256) and out.z_logits.shape == (2, 17, 32, 32)
    assert out.reward.shape == (2, 17) and out.discount.shape == (2, 17)


def test_bad_shapes_are_reported():
    model = _model()
    z, a, r, d = _inputs(2, 5)
    with pytest.raises(ValueError, match="rewards and dones"):
        model(z, a, r[:, :-1], d)
    with pytest.raises(ValueError, match="expected z"):
        model(z[..., :10], a, r, d)
