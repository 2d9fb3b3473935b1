"""Full checkpoints and weights-only snapshots on disk: names, listings, the resume point, pruning, bad entries."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from twm_core.agent import load_agent
from twm_core.checkpoint import (
    CHECKPOINT_KINDS,
    checkpoint_path,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    resolve_checkpoint,
    save_checkpoint,
    scan_checkpoints,
)
from twm_core.models.actor_critic import ActorCritic
from twm_core.presets import atari100k, make_config
from twm_core.run_dir import RunDir
from twm_core.training_state import snapshot_steps
from twm_core.world_model import WorldModel


@pytest.fixture
def run(tmp_path: Path) -> RunDir:
    return RunDir(tmp_path / "run").create()


def _save(run: RunDir, step: int, kind: str = "full") -> Path:
    payload = {"weights": torch.full((2,), float(step))}
    if kind == "snapshot":
        payload["kind"] = "snapshot"
    return save_checkpoint(run, step, payload)


def test_a_snapshot_payload_goes_to_its_own_name(run: RunDir) -> None:
    assert _save(run, 7).name == "step_000000007.pt"
    assert _save(run, 7, "snapshot").name == "snap_000000007.pt"
    assert checkpoint_path(run, 7, "snapshot") == run.ckpt_dir / "snap_000000007.pt"
    with pytest.raises(ValueError, match="kind"):
        save_checkpoint(run, 8, {"kind": "partial"})
    with pytest.raises(ValueError, match="kind"):
        checkpoint_path(run, 8, "partial")


def test_listings_show_both_kinds_and_the_resume_point_only_full_ones(run: RunDir) -> None:
    for step in (100, 300):
        _save(run, step)
    for step in (100, 200, 400):
        _save(run, step, "snapshot")
    found, problems = scan_checkpoints(run)
    assert problems == []
    assert [(c.step, c.kind) for c in found] == [(100, "full"), (100, "snapshot"), (200, "snapshot"),
                                                (300, "full"), (400, "snapshot")]
    assert [c.step for c in scan_checkpoints(run, kinds=("snapshot",))[0]] == [100, 200, 400]
    # one entry per step, the full checkpoint where both kinds exist
    assert [(s, p.name) for s, p in list_checkpoints(run)] == [
        (100, "step_000000100.pt"), (200, "snap_000000200.pt"), (300, "step_000000300.pt"), (400, "snap_000000400.pt")]
    assert [s for s, _ in list_checkpoints(run, kinds=("full",))] == [100, 300]
    assert latest_checkpoint(run) == (300, checkpoint_path(run, 300))  # the resume point: never a snapshot
    assert latest_checkpoint(run, kinds=CHECKPOINT_KINDS) == (400, checkpoint_path(run, 400, "snapshot"))
    assert resolve_checkpoint(run, "latest").name == "snap_000000400.pt"  # inspection: the newest weights
    assert resolve_checkpoint(run, 100).name == "step_000000100.pt"
    assert resolve_checkpoint(run, "200").name == "snap_000000200.pt"


def test_a_run_with_only_snapshots_has_no_resume_point(run: RunDir) -> None:
    _save(run, 150, "snapshot")
    assert latest_checkpoint(run) is None
    assert resolve_checkpoint(run, "latest").name == "snap_000000150.pt"


def test_pruning_keeps_the_newest_the_keep_every_multiples_and_every_snapshot(run: RunDir) -> None:
    for step in (100, 200, 300, 400, 500):
        _save(run, step)
        _save(run, step + 50, "snapshot")
    removed = prune_checkpoints(run, keep_last=1, keep_every=200)
    assert sorted(p.name for p in removed) == ["step_000000100.pt", "step_000000300.pt"]
    assert [(c.step, c.kind) for c in scan_checkpoints(run)[0]] == [
        (150, "snapshot"), (200, "full"), (250, "snapshot"), (350, "snapshot"), (400, "full"), (450, "snapshot"),
        (500, "full"), (550, "snapshot")]
    assert prune_checkpoints(run, keep_last=1) == [checkpoint_path(run, 200), checkpoint_path(run, 400)]
    assert [c.kind for c in scan_checkpoints(run)[0]].count("snapshot") == 5
    with pytest.raises(ValueError, match="keep_every"):
        prune_checkpoints(run, keep_last=1, keep_every=-1)


def test_bad_snapshot_entries_are_reported_like_bad_checkpoints(run: RunDir, tmp_path: Path) -> None:
    _save(run, 300, "snapshot")
    (run.ckpt_dir / "snap_000000100.pt").mkdir()
    (run.ckpt_dir / "snap_000000200.pt").symlink_to(run.ckpt_dir / "gone.pt")
    (tmp_path / "outside.pt").write_bytes(b"x")
    (run.ckpt_dir / "snap_000000400.pt").symlink_to(tmp_path / "outside.pt")
    (run.ckpt_dir / ".snap_000000500.pt.k1ll.tmp").write_bytes(b"half")
    found, problems = scan_checkpoints(run)
    assert [(c.step, c.kind) for c in found] == [(300, "snapshot")]
    assert sorted(problems) == ["run/ckpt/snap_000000100.pt: not a regular file",
                                "run/ckpt/snap_000000200.pt: a dangling symlink",
                                "run/ckpt/snap_000000400.pt: a symlink out of the run directory (not followed)"]


def test_snapshot_steps_are_log_spaced_from_the_prefill_to_the_end() -> None:
    cfg = atari100k()
    steps = sorted(snapshot_steps(cfg))
    assert steps[0] == cfg.replay.prefill and steps[-1] == cfg.train.total_steps and len(steps) == 8
    gaps = [b - a for a, b in zip(steps, steps[1:], strict=False)]
    assert gaps == sorted(gaps), "log spacing: each gap at least the one before"
    ratios = [b / a for a, b in zip(steps, steps[1:], strict=False)]
    assert max(ratios) - min(ratios) < 1e-3
    assert snapshot_steps(cfg.with_overrides({"train.snapshots": 0})) == frozenset()
    assert snapshot_steps(cfg.with_overrides({"train.snapshots": 1})) == {cfg.train.total_steps}
    tiny = make_config("debug", "Catch", overrides={"replay.prefill": 100, "train.total_steps": 103,
                                                    "train.snapshots": 8})
    assert snapshot_steps(tiny) == {100, 101, 102, 103}  # rounding merges steps: fewer than asked
    assert make_config("debug").train.snapshots == 0


def test_load_agent_opens_a_snapshot(run: RunDir) -> None:
    cfg = make_config("debug", "Catch")
    wm = WorldModel(cfg, 3)
    ac = ActorCritic(cfg.ac, 3, wm.z_dim, wm.h_dim)
    path = save_checkpoint(run, 123, {"config": cfg.to_dict(), "num_actions": 3, "world_model": wm.state_dict(),
                                      "actor_critic": ac.state_dict(), "kind": "snapshot"})
    assert set(load_checkpoint(path)) == {"config", "num_actions", "world_model", "actor_critic", "kind",
                                          "format_version", "step"}
    agent = load_agent(path, run_dir=run)
    assert agent.step == 123
    for name, value in agent.world_model.state_dict().items():
        assert torch.equal(value, wm.state_dict()[name])
