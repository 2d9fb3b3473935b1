"""Greedy acting (temperature 0) and `bench.greedy` on a tiny Catch run made by the real trainer: the greedy action
is the argmax of the policy's logits, greedy episodes do not depend on the RNG, and the record compares the two ways
of acting over the same episodes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `bench` is not an installed package
from bench.greedy import main  # noqa: E402
from twm_core.acting import PolicyRunner  # noqa: E402
from twm_core.agent import Agent, load_agent  # noqa: E402
from twm_core.checkpoint import resolve_checkpoint  # noqa: E402
from twm_core.evaluation import evaluate  # noqa: E402
from twm_core.presets import make_config  # noqa: E402
from twm_core.run_dir import RunDir  # noqa: E402
from twm_core.trainer import Trainer  # noqa: E402


@pytest.fixture(scope="module")
def catch_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("greedy") / "catch"
    cfg = make_config("debug", "Catch", seed=0, overrides={
        "train.total_steps": 130, "replay.prefill": 100, "train.pretrain_budget": 2000, "train.eval_episodes": 0,
        "train.final_eval_episodes": 0, "train.checkpoint_every": 100})
    Trainer(cfg, RunDir(path), "cpu").run()
    return path


def agent_of(run: Path) -> Agent:
    return load_agent(resolve_checkpoint(RunDir(run), "latest"), run_dir=RunDir(run))


def test_greedy_action_is_the_argmax_of_the_policy(catch_run: Path) -> None:
    agent = agent_of(catch_run)
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 256, size=(6, agent.config.env.frame_stack, 64, 64), dtype=np.uint8)
    runner = PolicyRunner(agent.world_model, agent.actor_critic, 6, agent.device)
    greedy = runner.act(obs, temperature=0.0)
    with torch.inference_mode():
        z = agent.world_model.obs_model.encode_sample(torch.as_tensor(obs)[:, None], temperature=0)
        logits = agent.actor_critic.logits(agent.actor_critic.inputs(z.float(), None))  # (6, 1, A)
    assert np.array_equal(greedy, logits[:, 0].argmax(-1).numpy())
    # sampling (temperature 1) with a seeded generator draws, and is reproducible with the same seed
    a = runner.act(obs, generator=torch.Generator().manual_seed(3))
    b = runner.act(obs, generator=torch.Generator().manual_seed(3))
    assert np.array_equal(a, b)


def test_greedy_episodes_do_not_depend_on_the_rng(catch_run: Path) -> None:
    agent = agent_of(catch_run)
    played = []
    for rng_seed in (1, 2):
        torch.manual_seed(rng_seed)
        results = evaluate(agent.world_model, agent.actor_critic, agent.config, 3, 5, agent.device, temperature=0.0)
        played.append([(r.score, r.length) for r in results])
    assert played[0] == played[1]


def test_bench_record_compares_sampled_and_greedy(catch_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "greedy.json"
    record = main([str(catch_run), "--episodes", "3", "--json", str(out)])
    assert json.loads(out.read_text()) == record
    assert record["step"] == 130 and record["episodes"] == 3
    for name, temperature in (("sampled", 1.0), ("greedy", 0.0)):
        part = record[name]
        assert part["temperature"] == temperature and len(part["scores"]) == 3
        assert part["score_mean"] == pytest.approx(float(np.mean(part["scores"])))
    assert record["greedy_minus_sampled"] == pytest.approx(record["greedy"]["score_mean"]
                                                           - record["sampled"]["score_mean"])
    with pytest.raises(SystemExit):
        main([str(catch_run), "--episodes", "0"])
