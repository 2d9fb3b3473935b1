"""World-model losses against torch.distributions and hand-computed cases."""

from __future__ import annotations

import math

import torch
import torch.distributions as D

from twm_core import losses


def test_decoder_loss_is_gaussian_nll_summed_over_pixels():
    recon, obs = torch.rand(2, 3, 4, 8, 8), torch.rand(2, 3, 4, 8, 8)
    loss, metrics = losses.decoder_loss(recon, obs)
    expected = -D.Independent(D.Normal(recon, 1.0), 3).log_prob(obs).mean()
    assert torch.allclose(loss, expected)
    assert torch.allclose(metrics["recon_mae"], (obs - recon).abs().mean())


def test_decoder_loss_gradient_is_the_summed_nll_gradient():
    """The fused form (one squared error + the constant) against the elementwise NLL, at a frame batch's size."""
    g = torch.Generator().manual_seed(0)
    recon = torch.rand(3, 2, 4, 64, 64, generator=g).requires_grad_()
    obs = torch.rand(3, 2, 4, 64, 64, generator=g)
    loss, _ = losses.decoder_loss(recon, obs, coef=2.0)
    (fused_grad,) = torch.autograd.grad(loss, recon)
    elementwise = 2.0 * losses.gaussian_nll(recon, obs).flatten(2).sum(-1).mean()
    (plain_grad,) = torch.autograd.grad(elementwise, recon)
    assert torch.allclose(loss, elementwise, rtol=1e-6)
    assert torch.allclose(fused_grad, plain_grad, rtol=1e-6, atol=1e-9)
    assert plain_grad.abs().max() > 0


def test_entropy_hinge_is_zero_above_threshold_and_linear_below():
    uniform = torch.zeros(4, 2, 32, 32)  # normalised entropy 1
    loss, m = losses.latent_entropy_loss(uniform, coef=5, threshold=0.1)
    assert loss.item() == 0.0 and math.isclose(m["z_norm_ent"].item(), 1.0, rel_tol=1e-5)
    peaked = torch.full((4, 2, 32, 32), -1e4)
    peaked[..., 0] = 0  # entropy 0
    loss, m = losses.latent_entropy_loss(peaked, coef=5, threshold=0.1)
    assert math.isclose(loss.item(), 5 * 0.1, rel_tol=1e-5)


def test_entropy_matches_torch_distributions():
    logits = torch.randn(3, 2, 32, 32)
    expected = D.Independent(D.OneHotCategorical(logits=logits), 1).entropy().mean()
    _, m = losses.latent_entropy_loss(logits, coef=1, threshold=0.1)
    assert torch.allclose(m["z_ent"], expected, atol=1e-5)
    assert torch.allclose(m["z_norm_ent"], expected / (32 * math.log(32)), atol=1e-6)


def test_consistency_is_cross_entropy_of_prediction_and_encoder():
    enc = torch.randn(2, 3, 4, 5, requires_grad=True)
    pred = torch.randn(2, 3, 4, 5).softmax(-1)
    loss, _ = losses.consistency_loss(enc, pred, coef=0.01)
    expected = 0.01 * -(pred * enc.log_softmax(-1)).sum((-1, -2)).mean()
    assert torch.allclose(loss, expected)
    loss.backward()
    assert enc.grad.abs().sum() > 0


def test_dynamics_loss_terms():
    torch.manual_seed(0)
    b, t, c, k = 3, 4, 2, 5
    pred, target = torch.randn(b, t, c, k), torch.randn(b, t, c, k)
    r_hat, r = torch.randn(b, t), torch.randn(b, t).tanh()
    g_logit = torch.randn(b, t)
    terminated = torch.zeros(b, t, dtype=torch.bool)
    terminated[0, 1] = True
    g = 0.99 * (~terminated).float()
    weights = torch.ones(b, t)
    weights[1, 2] = 0.0
    loss, m = losses.dynamics_loss(pred, r_hat, g_logit, target, r, g, weights, z_coef=1, reward_coef=10,
                                   discount_coef=50)
    ce = -(target.softmax(-1) * pred.log_softmax(-1)).sum((-1, -2))
    z_term = (ce * weights).sum() / weights.sum()
    r_term = -10 * D.Normal(r_hat, 1.0).log_prob(r).mean()
    g_term = -50 * D.Bernoulli(logits=g_logit, validate_args=False).log_prob(g).mean()
    assert torch.allclose(m["z_pred_loss"], z_term, atol=1e-5)
    assert torch.allclose(m["reward_loss"], r_term, atol=1e-5)
    assert torch.allclose(m["discount_loss"], g_term, atol=1e-4)
    assert torch.allclose(loss, z_term + r_term + g_term, atol=1e-4)


def test_masked_latent_targets_do_not_contribute():
    pred, target = torch.randn(1, 3, 2, 4), torch.randn(1, 3, 2, 4)
    zeros = torch.zeros(1, 3)
    weights = torch.tensor([[1.0, 0.0, 1.0]])
    base, _ = losses.dynamics_loss(pred, zeros, zeros, target, zeros, zeros, weights, z_coef=1, reward_coef=0,
                                   discount_coef=0)
    target2 = target.clone()
    target2[0, 1] = torch.randn(2, 4) * 10
    moved, _ = losses.dynamics_loss(pred, zeros, zeros, target2, zeros, zeros, weights, z_coef=1, reward_coef=0,
                                    discount_coef=0)
    assert torch.allclose(base, moved)
