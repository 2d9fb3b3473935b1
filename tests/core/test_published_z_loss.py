"""`dyn.z_loss_as_published`: the published code's dynamics loss without the next-latent term (jrobine/twm#4).

With the switch on, the z head keeps its initial weights and the dynamics loss is reward + discount; with it off
(the default, the paper's Eq. 4) everything is computed as before the switch existed.
"""

from __future__ import annotations

import json
import signal
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from twm_core import losses, wm_training
from twm_core.checkpoint import latest_checkpoint, load_checkpoint
from twm_core.cli import main as cli_main
from twm_core.config import ConfigError, TWMConfig
from twm_core.config_parsing import parse_assignments
from twm_core.optim import make_adam
from twm_core.presets import atari100k, debug, make_config
from twm_core.replay import ReplayBatch
from twm_core.run_dir import RunDir
from twm_core.trainer import Trainer
from twm_core.wm_training import WorldModelOptimizers, pretrain_dyn_update, world_model_update
from twm_core.world_model import WorldModel

NUM_ACTIONS = 5
UPDATES = 3


def _cfg(published: bool) -> TWMConfig:
    cfg = debug()
    return replace(cfg, dyn=replace(cfg.dyn, z_loss_as_published=published),
                   train=replace(cfg.train, wm_batch_size=4))


def _batch(cfg: TWMConfig, seed: int) -> ReplayBatch:
    g = torch.Generator().manual_seed(seed)
    b, t = cfg.train.wm_batch_size, cfg.train.wm_sequence_length + 1
    return ReplayBatch(obs=torch.randint(0, 256, (b, t + 1, 4, 64, 64), dtype=torch.uint8, generator=g),
                       actions=torch.randint(0, NUM_ACTIONS, (b, t), generator=g),
                       rewards=torch.randn(b, t, generator=g).tanh(),
                       terminated=torch.rand(b, t, generator=g) < 0.1, truncated=torch.zeros(b, t, dtype=torch.bool))


def _pretrain_inputs(cfg: TWMConfig, wm: WorldModel, seed: int) -> tuple[torch.Tensor, ...]:
    """z, actions, rewards, terminated, truncated (B, ℓ+1) and target logits (B, ℓ, C, K), as pretraining feeds."""
    g = torch.Generator().manual_seed(seed)
    b, t = cfg.train.wm_batch_size, cfg.train.wm_sequence_length + 1
    c, k = cfg.obs.z_categoricals, cfg.obs.z_categories
    z = F.one_hot(torch.randint(0, k, (b, t, c), generator=g), k).float().flatten(2)
    return (z, torch.randint(0, NUM_ACTIONS, (b, t), generator=g), torch.randn(b, t, generator=g).tanh(),
            torch.rand(b, t, generator=g) < 0.1, torch.zeros(b, t, dtype=torch.bool),
            torch.randn(b, t - 1, c, k, generator=g))


def _train(cfg: TWMConfig, optimizers=None) -> tuple[WorldModel, list[dict[str, torch.Tensor]], dict]:
    """A fresh world model after one dynamics-pretraining step and `UPDATES` full updates; returns it, the metrics
    of every step and its initial weights."""
    torch.manual_seed(0)
    wm = WorldModel(cfg, NUM_ACTIONS)
    initial = {k: v.clone() for k, v in wm.state_dict().items()}
    optimizers = (optimizers or WorldModelOptimizers.create)(wm)
    torch.manual_seed(1)
    history = [pretrain_dyn_update(wm, optimizers, *_pretrain_inputs(cfg, wm, 100))]
    for i in range(UPDATES):
        history.append(world_model_update(wm, optimizers, _batch(cfg, i))[1])
    return wm, history, initial


# --------------------------------------------------------------------------------------------- (1) frozen head
def test_published_z_head_stays_at_its_initial_weights():
    wm, _, initial = _train(_cfg(published=True))
    for name, value in wm.state_dict().items():
        if name.startswith("dyn_model.z_head."):
            assert torch.equal(value, initial[name]), f"{name} changed"
    changed = [n for n, v in wm.state_dict().items()
               if n.startswith("dyn_model.") and not n.startswith("dyn_model.z_head.") and v.is_floating_point()
               and not torch.equal(v, initial[n])]
    assert any(n.startswith("dyn_model.reward_head.") for n in changed)
    assert any(n.startswith("dyn_model.discount_head.") for n in changed)
    assert len(changed) > 10, changed  # the transformer trains too (from the reward and discount losses)
    assert all(p.grad is None for p in wm.dyn_model.z_head.parameters())


def test_published_optimizer_leaves_out_exactly_the_z_head():
    for published in (False, True):
        wm = WorldModel(_cfg(published), NUM_ACTIONS)
        in_optimizer = {id(p) for g in WorldModelOptimizers.create(wm).dyn.param_groups for p in g["params"]}
        z_head = {id(p) for p in wm.dyn_model.z_head.parameters()}
        rest = {id(p) for p in wm.dyn_model.parameters()} - z_head
        assert in_optimizer == (rest if published else rest | z_head)


# --------------------------------------------------------------------------------------------- (2) logged loss
def test_logged_dynamics_loss_has_no_z_term_when_published():
    _, published, _ = _train(_cfg(published=True))
    _, paper, _ = _train(_cfg(published=False))
    for m in published:
        assert "z_pred_loss" not in m
        assert torch.equal(m["dyn_loss"], m["reward_loss"] + m["discount_loss"])
        assert m["z_pred_ce"] > 0  # still logged, as a diagnostic of the untrained head
    for m in paper:
        assert m["z_pred_loss"] > 0
        assert torch.equal(m["dyn_loss"], m["z_pred_loss"] + m["reward_loss"] + m["discount_loss"])
    # Same weights and inputs in the first (pretraining) step: the terms are the same, only the sum differs.
    for key in ("z_pred_ce", "z_pred_ent", "z_kl", "reward_loss", "discount_loss"):
        assert torch.equal(published[0][key], paper[0][key]), key


# --------------------------------------------------------------------------------------------- (3) switch off
def _dynamics_loss_before(predicted_logits, predicted_reward, discount_logit, target_logits, target_reward,
                          target_discount, target_weights, *, z_coef, reward_coef, discount_coef):
    """`losses.dynamics_loss` as it was before the switch (loss and the metrics that enter it)."""
    log_p = predicted_logits.log_softmax(-1)
    target_q = target_logits.detach().log_softmax(-1).exp()
    cross_entropy = -(target_q * log_p).sum(-1).sum(-1)
    weighted_ce = (target_weights * cross_entropy).sum() / target_weights.sum().clamp(min=1e-8)
    z_loss = z_coef * weighted_ce
    reward_loss = reward_coef * losses.gaussian_nll(predicted_reward, target_reward).mean()
    discount_loss = discount_coef * F.binary_cross_entropy_with_logits(discount_logit, target_discount,
                                                                       reduction="mean")
    loss = z_loss + reward_loss + discount_loss
    return loss, {"z_pred_loss": z_loss.detach(), "z_pred_ce": weighted_ce.detach(),
                  "reward_loss": reward_loss.detach(), "discount_loss": discount_loss.detach(),
                  "dyn_loss": loss.detach()}


def test_switch_off_is_bitwise_the_computation_before_it(monkeypatch):
    cfg = _cfg(published=False)
    assert cfg.dyn.z_loss_as_published is False and debug().dyn.z_loss_as_published is False
    wm_new, new, _ = _train(cfg)

    def before(*args, z_in_loss, **kwargs):
        assert z_in_loss is True
        loss, metrics = _dynamics_loss_before(*args, **kwargs)
        return loss, {**metrics, "z_pred_ent": torch.zeros(()), "z_kl": torch.zeros(())}

    def optimizers_before(wm: WorldModel) -> WorldModelOptimizers:
        o, d = wm.cfg.obs, wm.cfg.dyn
        return WorldModelOptimizers(obs=make_adam(wm.obs_model.parameters(), o.lr, o.eps, o.weight_decay),
                                    dyn=make_adam(wm.dyn_model.parameters(), d.lr, d.eps, d.weight_decay))

    monkeypatch.setattr(wm_training.losses, "dynamics_loss", before)
    wm_old, old, _ = _train(cfg, optimizers_before)
    for name, value in wm_new.state_dict().items():
        assert torch.equal(value, wm_old.state_dict()[name]), name
    for m_new, m_old in zip(new, old, strict=True):
        for key in ("z_pred_loss", "z_pred_ce", "reward_loss", "discount_loss", "dyn_loss", "dyn_grad_norm"):
            assert torch.equal(m_new[key], m_old[key]), key


def test_loss_function_default_equals_z_in_loss_true():
    g = torch.Generator().manual_seed(0)
    b, t, c, k = 3, 5, 4, 6
    args = (torch.randn(b, t, c, k, generator=g, requires_grad=True), torch.randn(b, t, generator=g),
            torch.randn(b, t, generator=g), torch.randn(b, t, c, k, generator=g), torch.randn(b, t, generator=g),
            torch.rand(b, t, generator=g), (torch.rand(b, t, generator=g) > 0.2).float())
    coefs = {"z_coef": 1.0, "reward_coef": 10.0, "discount_coef": 50.0}
    loss, metrics = losses.dynamics_loss(*args, **coefs)
    loss_old, metrics_old = _dynamics_loss_before(*args, **coefs)
    assert torch.equal(loss, loss_old)
    assert all(torch.equal(metrics[key], value) for key, value in metrics_old.items())
    loss_pub, metrics_pub = losses.dynamics_loss(*args, **coefs, z_in_loss=False)
    assert torch.equal(loss_pub, metrics["reward_loss"] + metrics["discount_loss"])
    assert not loss_pub.requires_grad  # nothing in it depends on the z logits (the only input with a gradient)
    assert torch.equal(metrics_pub["z_pred_ce"], metrics["z_pred_ce"]) and "z_pred_loss" not in metrics_pub


# --------------------------------------------------------------------------------------------- (4) config
def test_config_round_trip_and_cli_override(capsys):
    assert atari100k().dyn.z_loss_as_published is False  # the preset is the paper's method
    cfg = make_config("debug", overrides=parse_assignments(["dyn.z_loss_as_published=true"]))
    assert cfg.dyn.z_loss_as_published is True
    assert TWMConfig.from_dict(cfg.to_dict()) == cfg
    assert TWMConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert make_config("debug", overrides={"dyn.z_loss_as_published": "0"}).dyn.z_loss_as_published is False
    old = debug().to_dict()
    del old["dyn"]["z_loss_as_published"]  # a config.json written before the switch existed
    assert TWMConfig.from_dict(old).dyn.z_loss_as_published is False
    with pytest.raises(ConfigError, match=r"dyn\.z_loss_as_published"):
        make_config("debug", overrides={"dyn.z_loss_as_published": "maybe"})
    assert cli_main(["describe", "--preset", "debug", "--game", "Catch", "--json",
                     "--set", "dyn.z_loss_as_published=true"]) == 0
    assert json.loads(capsys.readouterr().out)["config"]["dyn"]["z_loss_as_published"] is True


# --------------------------------------------------------------------------------------------- (5) resume
def test_checkpoint_resume_keeps_the_z_head_frozen(tmp_path):
    overrides = {"train.total_steps": 140, "train.eval_episodes": 0, "train.final_eval_episodes": 0,
                 "replay.prefill": 100, "train.pretrain_budget": 3000, "train.checkpoint_every": 1000,
                 "dyn.z_loss_as_published": True}
    cfg = make_config("debug", "Catch", seed=3, overrides=overrides)
    initial = Trainer(cfg, RunDir(tmp_path / "init"), "cpu").wm.dyn_model.z_head.state_dict()

    rd = RunDir(tmp_path / "run")
    trainer = Trainer(cfg, rd, "cpu")

    train_step = trainer.train_step

    def train_step_then_stop() -> None:  # as a SIGTERM after some updates: checkpoint and stop
        train_step()
        if trainer.counters.train_steps == 10:
            trainer._request_stop(signal.SIGTERM, None)

    trainer.train_step = train_step_then_stop
    trainer.run()
    assert trainer.stopped
    stopped_at = latest_checkpoint(rd)[0]
    assert 100 < stopped_at < 140

    resumed = Trainer.resume(rd, "cpu")
    assert resumed.wm_opt.dyn.state_dict()["state"], "Adam moments restored"
    resumed.run()
    step, path = latest_checkpoint(rd)
    state = load_checkpoint(path)
    assert step == 140 and state["counters"]["phase"] == "finished" and state["counters"]["resumes"] == 1
    weights = state["world_model"]
    for name, value in initial.items():
        assert torch.equal(weights[f"dyn_model.z_head.{name}"], value), name
    assert not torch.equal(weights["dyn_model.reward_head.linears.0.weight"],
                           Trainer(cfg, RunDir(tmp_path / "init2"), "cpu").wm.state_dict()[
                               "dyn_model.reward_head.linears.0.weight"])
    num_dyn = len(list(resumed.wm.dyn_model.parameters())) - len(list(resumed.wm.dyn_model.z_head.parameters()))
    assert len(state["optimizers"]["dyn"]["param_groups"][0]["params"]) == num_dyn
