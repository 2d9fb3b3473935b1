"""Imagination bookkeeping and rollouts through the incremental path."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from twm_core.imagination import discount_bookkeeping, imagine, select_starts
from twm_core.models.actor_critic import ActorCritic
from twm_core.presets import debug
from twm_core.world_model import WorldModel


def test_weights_are_cumulative_discounts_reset_after_a_done():
    g = [0.9, 0.5, 0.05, 0.8, 0.5]
    cumulative, prev_done = torch.ones(1, 1), torch.zeros(1, 1, dtype=torch.bool)
    weights, dones = [], []
    for gt in g:
        w, cumulative, d = discount_bookkeeping(cumulative, prev_done, torch.tensor([[gt]]), 0.1)
        weights.append(w.item())
        dones.append(bool(d.item()))
        prev_done = d
    # products: 1, .9, .45, (.45·.05 = .0225 < .1 → done), then restart at 1: 1, .8
    assert weights == pytest.approx([1.0, 0.9, 0.45, 1.0, 0.8])
    assert dones == [False, False, True, False, False]


def test_a_real_done_before_the_start_gives_weight_one():
    w, cumulative, d = discount_bookkeeping(torch.full((1, 1), 0.3), torch.ones(1, 1, dtype=torch.bool),
                                            torch.tensor([[0.99]]), 0.1)
    assert w.item() == 1.0 and cumulative.item() == pytest.approx(0.99) and not d.item()


def _setup(num_actions=3, batch=6, time=9):
    torch.manual_seed(0)
    cfg = debug()
    wm = WorldModel(cfg, num_actions)
    ac = ActorCritic(cfg.ac, num_actions, wm.z_dim, wm.h_dim)
    z = F.one_hot(torch.randint(0, 8, (batch, time, 8)), 8).float().flatten(2)
    a = torch.randint(0, num_actions, (batch, time))
    start = select_starts(z, a, torch.randn(batch, time), torch.zeros(batch, time, dtype=torch.bool),
                          torch.zeros(batch, time, dtype=torch.bool), 20, torch.Generator().manual_seed(1))
    return cfg, wm, ac, start, z


def test_rollout_shapes_and_restarts():
    cfg, wm, ac, start, z = _setup()
    fresh = torch.zeros(z.shape[-1])
    fresh[::8] = 1  # a recognisable start latent
    with torch.no_grad():
        wm.dyn_model.discount_head.linears[-1].bias.fill_(-20.0)  # predict termination everywhere
    traj = imagine(wm, ac, start, 5, lambda n: fresh.expand(n, -1), 0.1)
    assert traj.z.shape == (20, 6, z.shape[-1]) and traj.hidden.shape == (20, 6, cfg.dyn.embed_dim)
    assert traj.actions.shape == traj.rewards.shape == traj.weights.shape == (20, 5)
    assert traj.dones.all()
    assert (traj.z[:, 1:] == fresh).all()  # every done row continues from a fresh start latent
    assert (traj.weights == 1).all()


def test_given_actions_are_used_and_attention_is_returned():
    cfg, wm, ac, start, z = _setup()
    actions = torch.randint(0, 3, (20, 4))
    traj = imagine(wm, ac, start, 4, lambda n: z[0, :n], 0.1, actions=actions, return_attention=True)
    assert torch.equal(traj.actions, actions)
    assert [a.shape[-1] for a in traj.attention] == [5, 8, 11, 14]  # 2 context tokens + 3 per step
    assert all(torch.allclose(a.sum(-1), torch.ones(())) for a in traj.attention)
