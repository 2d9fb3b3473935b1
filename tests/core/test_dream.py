"""Dream sessions: the step path against the parallel dynamics path, determinism across threads, forks against
replays, latent edits, futures, attention (labels, rollout) and the real emulator alongside."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from twm_core.agent import Agent
from twm_core.dream import (
    DreamError,
    DreamSession,
    StartCache,
    attention_overview,
    imagine_futures,
    query_attention,
    replay_start,
    reset_start,
)
from twm_core.envs import make_env
from twm_core.presets import debug


def _agent(game: str = "Catch", seed: int = 0) -> Agent:
    torch.manual_seed(seed)  # initial weights only; the sessions draw from their own generators
    cfg = debug(game)
    env = make_env(cfg.env, seed=0, eval=True)
    num_actions = int(env.action_space.n)
    env.close()
    return Agent.build(cfg, num_actions)


@pytest.fixture(scope="module")
def agent() -> Agent:
    return _agent()


def _session(agent: Agent, seed: int = 3, steps: int = 0, actions: list[int] | None = None,
             policy_steps: int = 0) -> DreamSession:
    session = DreamSession.begin(agent, reset_start(agent, seed, policy_steps), seed)
    for t in range(steps):
        session.step(None if actions is None else actions[t])
    return session


def _trace(session: DreamSession) -> list[tuple]:
    """Everything a point shows, comparable with ==."""
    return [(p.step, p.action, p.reward, p.discount, p.done, p.restarted, p.z.argmax(-1).tolist(), p.frame.tobytes(),
             None if p.real is None else (p.real.frame.tobytes(), p.real.reward, p.real.done))
            for p in session.points]


def test_step_path_equals_the_parallel_dynamics_path(agent: Agent) -> None:
    """Predictions of 20 session steps (longer than the 8-step memory) equal `forward` over the same tokens."""
    session = _session(agent, steps=20)
    pts = session.points
    z = torch.cat([session.context.z] + [p.z for p in pts[:-1]], dim=1)  # (1, T+1, Z): z_{-1} .. z_{T-1}
    actions = torch.tensor([[int(session.context.action)] + [p.action for p in pts[1:]]])  # (1, T+1)
    rewards = torch.cat([p.prev_reward for p in pts[:-1]], dim=1)  # (1, T): r_{-1} .. r̂_{T-2}
    dones = torch.cat([p.prev_done for p in pts[:-1]], dim=1)
    with torch.inference_mode():
        out = agent.world_model.dyn_model(z, actions, rewards, dones)
    reward = torch.tensor([p.reward for p in pts[1:]])
    discount = torch.tensor([p.discount for p in pts[1:]])
    torch.testing.assert_close(out.reward[0, 1:], reward, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.discount[0, 1:], discount, atol=1e-5, rtol=1e-5)
    for t, p in enumerate(pts[1:], start=1):
        if p.prior is not None:
            torch.testing.assert_close(out.z_logits[0, t].softmax(-1), p.prior, atol=1e-5, rtol=1e-4)


def test_same_seed_same_rollout_in_two_threads_and_global_rng_untouched(agent: Agent) -> None:
    reference = _trace(_session(agent, seed=11, steps=12))
    results: dict[int, list] = {}
    rng = torch.get_rng_state()

    def run(i: int) -> None:
        s = _session(agent, seed=11)
        for _ in range(12):
            s.step()
            torch.rand(7)  # another user's draws on the global RNG change nothing
        results[i] = _trace(s)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results[0] == reference and results[1] == reference
    torch.set_rng_state(rng)
    _session(agent, seed=11, steps=3)
    assert torch.equal(torch.get_rng_state(), rng), "a session drew from torch's global RNG"
    assert _trace(_session(agent, seed=12, steps=12)) != reference  # the seed matters


def test_fork_equals_a_fresh_session_replayed_to_that_step(agent: Agent) -> None:
    parent = _session(agent, seed=5, steps=12)
    before = _trace(parent)
    other = (parent.points[7].action + 1) % agent.num_actions
    child = parent.fork(6, action=other)
    for _ in range(5):
        child.step()
    assert _trace(parent) == before, "forking changed the parent"
    assert child.points[7].action == other
    replay = _session(agent, seed=5, steps=7, actions=[p.action for p in child.points[1:8]])
    for _ in range(5):
        replay.step()
    assert _trace(child) == _trace(replay)
    # the parent goes on undisturbed by the child's steps, and equals its own replay
    parent.step()
    assert _trace(parent) == _trace(_session(agent, seed=5, steps=13))


def test_fork_with_an_edited_latent(agent: Agent) -> None:
    parent = _session(agent, seed=2, steps=6)
    c, k = agent.world_model.dyn_model.z_shape
    old = parent.points[4].z.reshape(c, k).argmax(-1)
    edit = {0: int(old[0] + 1) % k, 3: int(old[3] + 2) % k}
    child = parent.fork(4, latent=edit)
    new = child.last.z.reshape(c, k).argmax(-1)
    assert child.num_steps == 4 and child.last.edited
    assert new[0] == edit[0] and new[3] == edit[3] and torch.equal(new[1:3], old[1:3])
    point = child.step(action=1)
    # the next prediction is the dynamics model's step from the shared memory with the edited latent
    p = parent.points[4]
    with torch.inference_mode():
        out, _ = agent.world_model.dyn_model.step(p.memory.index(torch.arange(1)), child.points[4].z,
                                                  torch.tensor([[1]]), p.prev_reward, p.prev_done)
    assert point.reward == pytest.approx(float(out.reward[0, 0]), abs=1e-6)
    with pytest.raises(DreamError):
        parent.fork(4, latent={c: 0})
    with pytest.raises(DreamError):
        parent.fork(99)


def test_futures_are_batched_reproducible_and_spread(agent: Agent) -> None:
    session = _session(agent, seed=4, steps=3)
    a = imagine_futures(session, 6, 5)
    b = imagine_futures(session, 6, 5)
    assert a.frames.shape == (6, 5, 64, 64) and a.std.shape == (5, 64, 64)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.actions, b.actions)
    assert len({a.latents[i, -1].tobytes() for i in range(6)}) > 1, "six samples never differ"
    np.testing.assert_allclose(a.mean, (a.frames / 255.0).mean(0), atol=1 / 255)
    np.testing.assert_allclose(a.std, (a.frames / 255.0).std(0), atol=2 / 255)
    fixed = imagine_futures(session, 3, 4, step=1, actions=[2, 2, 1, 0])
    assert (fixed.actions == np.array([2, 2, 1, 0])).all()
    assert session.num_steps == 3, "futures changed the session"
    with pytest.raises(DreamError):
        imagine_futures(session, 0, 4)


def test_attention_any_query_with_labels_and_rollout(agent: Agent) -> None:
    session = _session(agent, seed=1, steps=12)
    m = agent.world_model.dyn_model.tokens_per_step
    # the maps the step computed at the time, via the training imagination's step with return_attention
    p = session.points[10]
    with torch.inference_mode():
        out, _ = agent.world_model.dyn_model.step(p.memory.index(torch.arange(1)), p.z,
                                                  torch.tensor([[session.points[11].action]]), p.prev_reward,
                                                  p.prev_done, return_attention=True)
    for modality, position in (("r", 0), ("z", 1), ("a", 2)):
        step = 9 if modality == "r" else 10
        q = query_attention(session, step, modality)
        torch.testing.assert_close(q.weights, out.attention[0, :, :, position])
        torch.testing.assert_close(q.weights.sum(-1), torch.ones(q.weights.shape[:2]))
        assert len(q.labels) == q.weights.shape[-1]
        assert q.labels[-1].modality == "a" and q.labels[-1].step == 10 and q.labels[-1].index == 2 + m * 11 - 1
        own = [i for i, lab in enumerate(q.labels) if lab.modality == modality and lab.step == step][0]
        assert (q.weights[:, :, own + 1:] == 0).all(), "a query saw a later token"
    z0 = query_attention(session, -1, "a")  # the context step's action token sees only z_{-1}, a_{-1}
    assert [lab.modality for lab in z0.labels] == ["z", "a"]
    rolled = query_attention(session, 10, "a", rollout=True)
    assert rolled.rollout is not None and rolled.rollout_labels is not None
    assert rolled.rollout.shape == (agent.config.dyn.num_layers, 2 + m * 11)
    torch.testing.assert_close(rolled.rollout.sum(-1), torch.ones(rolled.rollout.shape[0]))
    window = 2 + m * 11 - len(rolled.labels)
    assert rolled.rollout[-1, :window].sum() > 0, "rollout through two layers reaches no token before the window"
    overview = attention_overview(session, 1)
    assert overview.matrix.shape == (13, 2 + m * 12) and overview.steps == list(range(-1, 12))
    torch.testing.assert_close(overview.matrix.sum(-1), torch.ones(13))
    with pytest.raises(DreamError):
        query_attention(session, 12, "a")  # a_12 is not chosen yet
    with pytest.raises(DreamError):
        query_attention(session, 3, "x")


def test_real_emulator_alongside_and_cached_starts(agent: Agent) -> None:
    session = _session(agent, seed=9, steps=10)
    env = make_env(agent.config.env, seed=9, eval=True)
    obs, _ = env.reset()
    assert np.array_equal(session.points[0].real.frame, np.asarray(obs)[-1])
    for p in session.points[1:]:
        if session.points[p.step - 1].real.snapshot is None:
            assert p.real is None
            continue
        obs, r, term, trunc, _ = env.step(p.action)
        assert np.array_equal(p.real.frame, np.asarray(obs)[-1]) and p.real.reward == r
        e = p.errors
        assert e is not None and e.pixel == pytest.approx(np.abs(p.frame / 255.0 - p.real.frame / 255.0).mean())
        if not p.restarted:
            expected = -(p.real.posterior * p.prior.log()).sum()
            assert e.latent_ce == pytest.approx(float(expected), rel=1e-5)
        if term or trunc:
            break
    env.close()
    cache = StartCache(agent)
    fresh = DreamSession.begin(agent, cache.reset_start(9), 9)
    fresh.close()
    again = DreamSession.begin(agent, cache.reset_start(9), 9)  # from the snapshot, in a pooled env
    for _ in range(10):
        again.step()
    assert _trace(again) == _trace(session)
    # a fork of a real session has its own emulator, restored to the fork point
    child = session.fork(4, action=session.points[5].action)
    for _ in range(5):
        child.step()
    assert _trace(child) == _trace(session)[:len(child.points)]


def test_replay_start_and_policy_steps(agent: Agent, tmp_path) -> None:
    with pytest.raises(DreamError):
        replay_start(agent, 0)  # no run, no replay
    s = _session(agent, seed=3, policy_steps=4)
    assert len(s.start.policy_actions) == 4
    assert _trace(s) == _trace(_session(agent, seed=3, policy_steps=4))
    s.step(1)
    with pytest.raises(DreamError):
        s.step(agent.num_actions)


def test_pong_session_runs_on_the_ale() -> None:
    pong = _agent("Pong")
    session = DreamSession.begin(pong, reset_start(pong, 0), 0)
    for _ in range(3):
        session.step()
    assert session.last.real is not None and session.last.errors is not None
    session.close()
