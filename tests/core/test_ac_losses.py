"""Actor-critic maths against hand-computed examples."""

from __future__ import annotations

import math

import pytest
import torch

from twm_core import losses


def test_gae_with_predicted_discounts_and_dones_by_hand():
    r = torch.tensor([[1.0, 0.0, 2.0]])
    g = torch.tensor([[0.9, 0.5, 0.8]])
    d = torch.tensor([[False, True, False]])
    v = torch.tensor([[0.5, 1.0, 2.0, 4.0]])
    lam = 0.5
    # t=2: δ = 2 + 0.8·4 − 2 = 3.2, A = 3.2
    # t=1: done → stopped discount 0: δ = 0 − 1 = −1, A = −1
    # t=0: δ = 1 + 0.9·1 − 0.5 = 1.4, A = 1.4 + 0.5·0.9·(−1) = 0.95
    adv = losses.gae_advantages(r, g, d, v, lam)
    assert torch.allclose(adv, torch.tensor([[0.95, -1.0, 3.2]]))


def test_gae_lambda_one_no_dones_is_discounted_return_minus_value():
    torch.manual_seed(0)
    r, v = torch.randn(2, 5), torch.randn(2, 6)
    g = torch.full((2, 5), 0.99)
    adv = losses.gae_advantages(r, g, torch.zeros(2, 5, dtype=torch.bool), v, 1.0)
    ret = v[:, -1]
    expected = []
    for t in range(4, -1, -1):
        ret = r[:, t] + 0.99 * ret
        expected.insert(0, ret - v[:, t])
    assert torch.allclose(adv, torch.stack(expected, 1), atol=1e-5)


def test_thresholded_entropy_is_zero_above_and_linear_below():
    coef, gamma = 0.01, 0.1
    assert losses.thresholded_entropy_loss(torch.tensor(0.5), coef, gamma).item() == 0.0
    assert losses.thresholded_entropy_loss(torch.tensor(0.1), coef, gamma).item() == 0.0
    below = [losses.thresholded_entropy_loss(torch.tensor(x), coef, gamma).item() for x in (0.0, 0.025, 0.05)]
    assert below == pytest.approx([0.001, 0.00075, 0.0005])


def test_actor_loss_pushes_up_advantaged_actions():
    logits = torch.zeros(1, 2, 3, requires_grad=True)
    actions = torch.tensor([[0, 2]])
    adv = torch.tensor([[1.0, -1.0]])
    loss, m = losses.actor_loss(logits, actions, adv, torch.ones(1, 2), 0.01, 0.1)
    loss.backward()
    assert logits.grad[0, 0, 0] < 0 and logits.grad[0, 1, 2] > 0  # descent raises a_0, lowers a_1
    assert m["norm_ent"].item() == pytest.approx(1.0)


def test_actor_and_critic_losses_are_weighted():
    logits = torch.randn(2, 3, 4)
    actions = torch.randint(0, 4, (2, 3))
    adv, w = torch.randn(2, 3), torch.rand(2, 3)
    loss, m = losses.actor_loss(logits, actions, adv, w, 0.0, 0.1)
    logp = torch.distributions.Categorical(logits=logits).log_prob(actions)
    assert torch.allclose(loss, -(w * logp * adv).mean(), atol=1e-6)
    v, ret = torch.randn(2, 3), torch.randn(2, 3)
    closs, _ = losses.critic_loss(v, ret, w)
    assert torch.allclose(closs, -(w * torch.distributions.Normal(v, 1.0).log_prob(ret)).mean(), atol=1e-6)


def test_actor_pretrain_loss_maximises_entropy():
    logits = torch.zeros(2, 3, 6)
    loss, m = losses.actor_pretrain_loss(logits, 0.01)
    assert loss.item() == pytest.approx(-0.01) and m["ent"].item() == pytest.approx(math.log(6))
