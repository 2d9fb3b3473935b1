"""The shipped demo (`twm_core.demo`): intact, small, weights-only, a learned policy; installed idempotently and
atomically, never over a user's run, refusing damaged files; and a rebuild that is deterministic."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from twm_core import demo
from twm_core.agent import load_agent
from twm_core.checkpoint import list_checkpoints
from twm_core.run_dir import RunDir, list_runs

SNAPSHOT_KEYS = {"config", "num_actions", "world_model", "actor_critic", "kind", "format_version", "step"}
TINY = {"replay.prefill": 120, "train.pretrain_budget": 3000, "train.eval_episodes": 0,
        "train.final_eval_episodes": 2}
"""A shortened build (160 env steps; a prefill of 120 holds a first 12×8 world-model batch): the same code path as
`make demo` in about 20 s."""


@pytest.fixture
def shipped(tmp_path: Path) -> Path:
    """A copy of the shipped demo, free to damage."""
    return Path(shutil.copytree(demo.DEFAULT_DIR, tmp_path / "shipped"))


def snapshot_path(demo_dir: Path) -> Path:
    manifest = demo.read_manifest(demo_dir)
    return demo_dir / "ckpt" / f"snap_{manifest['checkpoint_step']:09d}.pt"


def test_shipped_demo_is_intact_small_and_learned() -> None:
    manifest = demo.verify(demo.DEFAULT_DIR)
    files = [demo.DEFAULT_DIR / rel for rel in manifest["files"]]
    assert sum(p.stat().st_size for p in files) < 8 * 2**20
    assert sorted(manifest["files"]) == demo._files(demo.DEFAULT_DIR)  # nothing unlisted ships
    assert (manifest["game"], manifest["preset"], manifest["seed"], manifest["deterministic"]) == \
        ("Catch", "catch", 0, True)
    shipped = json.loads((demo.DEFAULT_DIR / "config.json").read_text())
    assert manifest["config_sha256"] == demo.config_hash(shipped)
    current = demo.demo_config().to_dict()  # the recipe `make demo` runs now (fields added since have defaults)
    stale = [f"{section}.{key}" for section, values in shipped.items() if isinstance(values, dict)
             for key, value in values.items() if current.get(section, {}).get(key, value) != value]
    stale += [key for key, value in shipped.items() if not isinstance(value, dict) and current.get(key) != value]
    assert not stale, f"the catch preset changed since the demo was built ({stale}): run `make demo`"
    assert manifest["final_score"] > manifest["random_policy_score"] + 2  # learned, not chance (−1.34)
    status = json.loads((demo.DEFAULT_DIR / "status.json").read_text())
    assert status["state"] == "finished" and status["step"] == manifest["checkpoint_step"]


def test_snapshot_is_weights_only_and_loads_as_an_agent() -> None:
    path = snapshot_path(demo.DEFAULT_DIR)
    raw = torch.load(path, weights_only=True)
    assert set(raw) == SNAPSHOT_KEYS and raw["kind"] == "snapshot"
    agent = load_agent(path, run_dir=RunDir(demo.DEFAULT_DIR))
    assert agent.step == raw["step"] and agent.config.env.game == "Catch" and agent.num_actions == 3
    if (demo.DEFAULT_DIR / "replay").is_dir():  # shipped when small: replay starts work too
        assert agent.replay().size == agent.step


def test_install_copies_the_run_and_is_idempotent(tmp_path: Path, shipped: Path) -> None:
    root = tmp_path / "runs"
    run, installed = demo.install(root, demo_dir=shipped)
    assert installed and run.path == root / demo.DEMO_RUN_ID
    assert [r.run_id for r in list_runs(root)] == [demo.DEMO_RUN_ID]
    [(step, path)] = list_checkpoints(run)
    assert step == demo.read_manifest(shipped)["checkpoint_step"]
    load_agent(path, run_dir=run)
    demo.verify(run.path)  # the installed copy carries its manifest
    assert demo.installed_manifest(root) == demo.read_manifest(shipped)
    before = {p: p.stat().st_mtime_ns for p in run.path.rglob("*")}
    again, installed = demo.install(root, demo_dir=shipped)
    assert (again, installed) == (run, False)
    assert {p: p.stat().st_mtime_ns for p in run.path.rglob("*")} == before
    assert sorted(os.listdir(root)) == [demo.DEMO_RUN_ID]  # no temporary left


def test_install_never_overwrites_a_users_run(tmp_path: Path, shipped: Path) -> None:
    mine = tmp_path / "runs" / demo.DEMO_RUN_ID
    mine.mkdir(parents=True)
    (mine / "config.json").write_text("{}")
    run, installed = demo.install(tmp_path / "runs", demo_dir=shipped)
    assert not installed and sorted(os.listdir(run.path)) == ["config.json"]
    assert demo.installed_manifest(tmp_path / "runs") is None  # not the demo: the backend says so (409)


@pytest.mark.parametrize("damage", ["flip a byte", "truncate", "delete", "no manifest"])
def test_install_refuses_a_damaged_shipped_demo(tmp_path: Path, shipped: Path, damage: str) -> None:
    path = snapshot_path(shipped)
    if damage == "flip a byte":
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    elif damage == "truncate":
        path.write_bytes(path.read_bytes()[:1000])
    elif damage == "delete":
        path.unlink()
    else:
        (shipped / demo.MANIFEST).unlink()
    root = tmp_path / "runs"
    with pytest.raises(demo.DemoError, match="shipped demo") as info:
        demo.install(root, demo_dir=shipped)
    assert str(tmp_path) not in str(info.value)  # names the file, not the server's paths
    assert not root.exists() or os.listdir(root) == []


def test_install_is_atomic(tmp_path: Path, shipped: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """While the copy runs no run is visible; a copy that fails half way leaves nothing behind."""
    root = tmp_path / "runs"
    copied = []
    real_copy = shutil.copyfile

    def copy(src: Path, dst: Path) -> Path:
        assert list_runs(root) == [] and not (root / demo.DEMO_RUN_ID).exists()
        if len(copied) == 2:
            raise OSError(28, "No space left on device")
        copied.append(dst)
        return real_copy(src, dst)

    monkeypatch.setattr(demo.shutil, "copyfile", copy)
    with pytest.raises(OSError, match="No space"):
        demo.install(root, demo_dir=shipped)
    assert len(copied) == 2 and os.listdir(root) == []
    monkeypatch.setattr(demo.shutil, "copyfile", real_copy)
    assert demo.install(root, demo_dir=shipped)[1]


def test_cli_install(tmp_path: Path, shipped: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["install", str(tmp_path / "runs"), "--demo-dir", str(shipped)]
    assert demo.main(args) == 0 and "installed" in capsys.readouterr().out
    assert demo.main(args) == 0 and "already present" in capsys.readouterr().out
    snapshot_path(shipped).unlink()
    assert demo.main(["install", str(tmp_path / "other"), "--demo-dir", str(shipped)]) == 1
    assert "damaged" in capsys.readouterr().err


def test_links_open_the_checkpoint() -> None:
    assert demo.links("demo-catch", 4000)["imagine"] == "imagine?run=demo-catch&ckpt=4000"


@pytest.mark.slow
def test_two_builds_give_the_same_weights(tmp_path: Path) -> None:
    """`make demo` is reproducible: two (shortened) builds from scratch give equal weights, bit for bit."""
    manifests = [demo.build(tmp_path / f"build{i}", steps=160, overrides=TINY) for i in range(2)]
    states = [torch.load(snapshot_path(tmp_path / f"build{i}"), weights_only=True) for i in range(2)]
    for key in ("world_model", "actor_critic"):
        assert states[0][key].keys() == states[1][key].keys()
        for name, tensor in states[0][key].items():
            assert torch.equal(tensor, states[1][key][name]), f"{key}.{name} differs between two builds"
    assert manifests[0]["config_sha256"] == manifests[1]["config_sha256"]
    assert manifests[0]["final_score"] == manifests[1]["final_score"]
    assert manifests[0]["files"]["config.json"] == manifests[1]["files"]["config.json"]
    assert sorted(os.listdir(tmp_path)) == ["build0", "build1"]  # no staging directory left
