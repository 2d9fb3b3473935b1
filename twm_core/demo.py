"""The shipped demo: a small learned Catch model that a fresh install can open at once (issue #13 item 2).

`build(out_dir)` trains the `catch` preset on Catch with seed 0 and deterministic kernels on the CPU, then packs the
run into a demo run directory (`DEFAULT_DIR`, shipped as package data):

    config.json  status.json (finished)  metrics.jsonl  scores.jsonl  ckpt/<one snapshot>  manifest.json

The checkpoint is a weights-only *snapshot*: `{"config", "num_actions", "world_model", "actor_critic", "kind":
"snapshot"}` (+ `format_version`, `step`), written by `checkpoint.save_checkpoint` and read by `agent.load_agent`
(`torch.load(weights_only=True)`): no optimizers, RNG or replay, so it is a fraction of a training checkpoint.
`manifest.json` records how it was made (config hash, seed, torch version, steps, final score, build minutes) and
the sha256 of every file. `install(runs_root)` copies it into a runs directory as the run `demo-catch`, checking
those hashes, atomically (a hidden temporary directory, then one rename), never over an existing run.

`make demo` (`python -m twm_core.demo build`) is the reproducible rebuild: the same seed, config and torch version
give the same weights on the same machine (tests/core/test_demo.py checks two short builds are equal).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from twm_core.allocator import keep_freed_memory
from twm_core.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint
from twm_core.config import TWMConfig
from twm_core.file_io import fsync_dir, read_json, write_json_atomic
from twm_core.presets import catch
from twm_core.run_dir import RunDir, write_status

DEFAULT_DIR = Path(__file__).parent / "data" / "demo"
DEMO_RUN_ID = "demo-catch"
GAME, SEED = "Catch", 0
RANDOM_POLICY_SCORE = -1.34  # twm_core/envs/catch.py: a uniformly random policy, 2000 episodes of 5 balls
MAX_SCORE = 5.0
MANIFEST = "manifest.json"
MAX_REPLAY_BYTES = 2 * 2**20  # ship the replay chunks only below this (the whole demo stays far under 8 MB)
RUN_FILES = ("config.json", "status.json", "metrics.jsonl", "scores.jsonl")


class DemoError(RuntimeError):
    """The shipped demo is missing, damaged, or cannot be installed (the message says which file and why)."""


# ----------------------------------------------------------------------------------------------- build
def demo_config(steps: int | None = None, overrides: dict[str, Any] | None = None) -> TWMConfig:
    """The demo's config: the `catch` preset, seed 0, deterministic kernels; `steps` and dotted `overrides` shorten
    it (tests, CI)."""
    cfg = replace(catch(GAME, SEED), deterministic=True)
    changes = {**({"train.total_steps": steps} if steps is not None else {}), **(overrides or {})}
    cfg = cfg.with_overrides(changes) if changes else cfg
    if cfg.train.total_steps <= cfg.replay.prefill:
        raise ValueError(f"steps must exceed the prefill ({cfg.replay.prefill}), got {cfg.train.total_steps}")
    if cfg.train.final_eval_episodes < 1:
        raise ValueError("the demo needs a final evaluation (train.final_eval_episodes >= 1) for its score")
    return cfg


def config_hash(cfg: TWMConfig | dict[str, Any]) -> str:
    """sha256 of the config's canonical JSON (sorted keys), of the dict as stored (config.json) or of a config."""
    data = cfg.to_dict() if isinstance(cfg, TWMConfig) else cfg
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def train(run_dir: Path, steps: int | None = None, overrides: dict[str, Any] | None = None) -> dict[str, float]:
    """Train the demo config into `run_dir` on the CPU; returns the trainer's final summary."""
    from twm_core.trainer import Trainer  # the trainer pulls in envs and optimizers: only a build needs it

    return Trainer(demo_config(steps, overrides), RunDir(run_dir), device="cpu").run()


def pack(run_dir: Path, out_dir: Path, build_seconds: float) -> dict[str, Any]:
    """Pack the finished run at `run_dir` into the demo directory `out_dir` (replaced whole); returns the manifest."""
    src = RunDir(run_dir)
    state = load_checkpoint(checkpoint_path(src, _final_step(src)))
    if state.get("counters", {}).get("phase") != "finished":
        raise DemoError(f"{run_dir}: the run did not finish (phase {state.get('counters', {}).get('phase')!r})")
    step = int(state["step"])
    cfg = TWMConfig.from_dict(state["config"])
    score = final_score(src.scores_path)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".demo-", dir=out_dir.parent))
    try:
        dst = RunDir(staging)
        staging.chmod(0o755)  # mkdtemp makes it private; the demo is package data
        for name in ("config.json", "metrics.jsonl", "scores.jsonl"):
            shutil.copyfile(src.path / name, dst.path / name)
        _copy_replay(src, dst)
        status = read_json(src.status_path) or {}
        for volatile in ("pid", "updated", "device"):
            status.pop(volatile, None)
        write_status(dst, **{**status, "state": "finished", "step": step, "error": None})
        snapshot = {"config": state["config"], "num_actions": int(state["num_actions"]),
                    "world_model": state["world_model"], "actor_critic": state["actor_critic"], "kind": "snapshot"}
        save_checkpoint(dst, step, snapshot)  # ckpt/snap_<step>.pt
        manifest = {
            "run_id": DEMO_RUN_ID, "game": cfg.env.game, "preset": cfg.preset, "seed": cfg.seed,
            "deterministic": cfg.deterministic, "config_sha256": config_hash(state["config"]), "steps": step,
            "total_steps": cfg.train.total_steps, "checkpoint_step": step,
            "final_score": score["mean"], "final_episodes": score["episodes"], "max_score": MAX_SCORE,
            "random_policy_score": RANDOM_POLICY_SCORE, "build_minutes": round(build_seconds / 60, 2),
            "torch_version": torch.__version__, "python_version": platform.python_version(),
            "machine": platform.machine(), "files": {},
        }
        manifest["files"] = {rel: sha256_file(dst.path / rel) for rel in _files(dst.path)}
        write_json_atomic(dst.path / MANIFEST, manifest)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def _copy_replay(src: RunDir, dst: RunDir) -> None:
    """The run's replay chunks, when they are small (Catch frames compress to a few hundred KB): they let the
    dashboard start dreams from replay rows and run the calibration, besides the env-reset starts that need none."""
    chunks = sorted(src.replay_dir.glob("chunk_*.npz"))
    if not chunks or sum(p.stat().st_size for p in chunks) > MAX_REPLAY_BYTES:
        return
    dst.replay_dir.mkdir()
    for path in chunks:
        shutil.copyfile(path, dst.replay_dir / path.name)


def build(out_dir: Path = DEFAULT_DIR, steps: int | None = None, keep_run: Path | None = None,
          overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train the demo from scratch and pack it into `out_dir`; returns the manifest. `keep_run`: train there
    (and keep the full training run) instead of in a temporary directory."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="twm-demo-build-") as tmp:
        run_dir = Path(keep_run) if keep_run is not None else Path(tmp) / DEMO_RUN_ID
        train(run_dir, steps, overrides)
        return pack(run_dir, Path(out_dir), time.monotonic() - started)


def final_score(scores_path: Path) -> dict[str, float]:
    """Mean return over the final evaluation episodes in scores.jsonl, and their count."""
    scores = []
    for line in Path(scores_path).read_text().splitlines():
        row = json.loads(line) if line.strip() else {}
        if row.get("kind") == "final_eval":
            scores.append(float(row["score"]))
    if not scores:
        raise DemoError(f"{scores_path}: no final evaluation scores")
    return {"mean": round(sum(scores) / len(scores), 4), "episodes": len(scores)}


def _final_step(run: RunDir) -> int:
    from twm_core.checkpoint import latest_checkpoint

    latest = latest_checkpoint(run)
    if latest is None:
        raise DemoError(f"{run.path}: no checkpoint")
    return latest[0]


# ----------------------------------------------------------------------------------------------- install
def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _files(root: Path) -> list[str]:
    """Relative POSIX paths of the regular files under `root` (the manifest excluded), sorted."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and p.name != MANIFEST)


def read_manifest(demo_dir: Path | None = None) -> dict[str, Any]:
    """The shipped demo's manifest (`demo_dir`, default `DEFAULT_DIR`). Raises DemoError when it is missing or not a
    manifest."""
    path = Path(demo_dir or DEFAULT_DIR) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DemoError(f"the shipped demo has no readable {MANIFEST} ({type(exc).__name__})") from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict) or not manifest["files"]:
        raise DemoError(f"the shipped demo's {MANIFEST} lists no files")
    return manifest


def verify(demo_dir: Path | None = None) -> dict[str, Any]:
    """Check every file of the shipped demo against the manifest's sha256; returns the manifest."""
    demo_dir = Path(demo_dir or DEFAULT_DIR)
    manifest = read_manifest(demo_dir)
    for rel, expected in manifest["files"].items():
        path = demo_dir / rel
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise DemoError(f"the shipped demo's manifest names a file outside the demo: {rel!r}")
        if not path.is_file():
            raise DemoError(f"the shipped demo is damaged: {rel} is missing")
        if sha256_file(path) != expected:
            raise DemoError(f"the shipped demo is damaged: {rel} does not match its sha256 in {MANIFEST}")
    return manifest


def install(runs_root: Path, run_id: str = DEMO_RUN_ID, demo_dir: Path | None = None) -> tuple[RunDir, bool]:
    """Copy the shipped demo into `runs_root/run_id`; returns (the run, whether it was installed just now).

    An existing `run_id` is returned unchanged (never overwritten: it may be the user's). The copy goes to a hidden
    temporary directory in `runs_root` (which `list_runs` skips), each file is checked against the manifest, and
    one rename makes the run appear whole. Raises DemoError for a missing or damaged shipped demo.
    """
    runs_root = Path(runs_root)
    target = RunDir(runs_root / run_id)
    if os.path.lexists(target.path):
        return target, False
    demo_dir = Path(demo_dir or DEFAULT_DIR)
    manifest = verify(demo_dir)
    runs_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{run_id}-", suffix=".tmp", dir=runs_root))
    try:
        staging.chmod(0o755)  # as a run directory a training job makes
        for rel, expected in manifest["files"].items():
            dst = staging / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(demo_dir / rel, dst)
            if sha256_file(dst) != expected:  # the shipped file changed between verify and the copy
                raise DemoError(f"the shipped demo is damaged: {rel} does not match its sha256 in {MANIFEST}")
        shutil.copyfile(demo_dir / MANIFEST, staging / MANIFEST)
        try:
            os.rename(staging, target.path)  # fails (ENOTEMPTY/EEXIST) if someone created the run meanwhile
        except OSError:
            if os.path.lexists(target.path):
                shutil.rmtree(staging, ignore_errors=True)
                return target, False
            raise
        fsync_dir(runs_root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target, True


def installed_manifest(runs_root: Path, run_id: str = DEMO_RUN_ID) -> dict[str, Any] | None:
    """The manifest of the demo installed as `runs_root/run_id`, or None when that run is absent or is not a demo
    (a run of the user's that happens to have the name)."""
    try:
        manifest = json.loads((Path(runs_root) / run_id / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or "config_sha256" not in manifest or "checkpoint_step" not in manifest:
        return None
    return manifest


def links(run_id: str, step: int) -> dict[str, str]:
    """Dashboard paths (relative to its root) that open the run at checkpoint `step` on each inspection page."""
    return {page: f"{page}?run={run_id}&ckpt={step}" for page in ("imagine", "attention", "play")}


# ----------------------------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m twm_core.demo", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="train the demo and pack it (the reproducible rebuild behind `make demo`)")
    b.add_argument("--out", type=Path, default=DEFAULT_DIR, help=f"demo directory (default {DEFAULT_DIR})")
    b.add_argument("--steps", type=int, default=None, help="env steps (default: the catch preset's)")
    b.add_argument("--keep-run", type=Path, default=None, help="train into this run directory and keep it")
    i = sub.add_parser("install", help="copy the shipped demo into a runs directory")
    i.add_argument("runs_root", type=Path)
    i.add_argument("--run-id", default=DEMO_RUN_ID)
    i.add_argument("--demo-dir", type=Path, default=None, help=f"the shipped demo (default {DEFAULT_DIR})")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            keep_freed_memory()  # this process trains (twm_core.allocator)
            manifest = build(args.out, args.steps, args.keep_run)
            sys.stdout.write(json.dumps({k: v for k, v in manifest.items() if k != "files"}, indent=1) + "\n")
        else:
            run, installed = install(args.runs_root, args.run_id, args.demo_dir)
            sys.stdout.write(f"{'installed' if installed else 'already present'}: {run.path}\n")
    except (DemoError, ValueError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
