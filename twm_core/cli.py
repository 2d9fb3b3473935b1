"""`twm` command line: describe, train, eval, report (and sweep, from the backend).

    twm describe --preset atari100k --game Pong [--json]
    twm train --game Pong --preset debug --seed 0 [--steps N] [--device auto] [--set key=value ...]
    twm train --run-dir checkpoints/<run_id>       (its config.json; resumed from the latest checkpoint)
    twm train --resume checkpoints/<run_id>
    twm eval checkpoints/<run_id> [--episodes 100] [--checkpoint latest]
    twm sweep --games Pong,Boxing --seeds 0-4 --preset atari100k [--executor local|ray] [--out report.md]
    twm report checkpoints/ [RUN_DIR ...] [--out report.json|report.md] [--reps 2000] [--seed 0]

Output goes to stdout (summaries) and stderr (progress); this module is the only one in twm_core that prints.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from twm_core.config import ConfigError, TWMConfig
from twm_core.config_parsing import parse_assignments
from twm_core.presets import PRESETS, make_config


def count_parameters(cfg: TWMConfig, num_actions: int) -> dict[str, int]:
    """Parameter counts of every module for a game with `num_actions` actions."""
    from twm_core.models.actor_critic import ActorCritic
    from twm_core.world_model import WorldModel

    wm = WorldModel(cfg, num_actions)
    ac = ActorCritic(cfg.ac, num_actions, wm.z_dim, wm.h_dim)

    def n(module: Any) -> int:
        return sum(p.numel() for p in module.parameters() if p.requires_grad)

    obs = wm.obs_model
    counts = {
        "encoder": n(obs.encoder_cnn) + n(obs.encoder_mlp),
        "decoder": n(obs.decoder_mlp) + n(obs.decoder_cnn),
        "observation_model": n(obs),
        "transformer": n(wm.dyn_model.transformer),
        "dynamics_model": n(wm.dyn_model),
        "world_model": n(wm),
        "actor": n(ac.actor),
        "critic": n(ac.critic),
    }
    counts["total"] = counts["world_model"] + counts["actor"] + counts["critic"]
    return counts


def _num_actions(game: str) -> int:
    from twm_core.envs import make_env

    env = make_env(game, seed=0)
    try:
        return int(env.action_space.n)  # type: ignore[attr-defined]  # every env here has a Discrete space
    finally:
        env.close()


def cmd_describe(args: argparse.Namespace) -> int:
    cfg = make_config(args.preset, args.game, args.seed, parse_assignments(args.set))
    num_actions = _num_actions(cfg.env.game)
    counts = count_parameters(cfg, num_actions)
    if args.json:
        print(json.dumps({"config": cfg.to_dict(), "num_actions": num_actions, "parameters": counts}, indent=2))
        return 0
    print(f"# {cfg.preset} preset, game {cfg.env.game} ({num_actions} actions), seed {cfg.seed}")
    for section, values in cfg.to_dict().items():
        if isinstance(values, dict):
            print(f"[{section}]")
            for key, value in values.items():
                print(f"  {key} = {value}")
        else:
            print(f"{section} = {values}")
    print("# parameters")
    for name, count in counts.items():
        print(f"  {name:<18} {count:>12,}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from twm_core.allocator import keep_freed_memory
    from twm_core.launch import attempt_leftovers, open_trainer, prepare_run
    from twm_core.run_dir import RunDir, new_run_id

    keep_freed_memory()  # this process trains: reuse freed pages (twm_core.allocator)

    bar = tqdm(unit="step", dynamic_ncols=True, disable=args.no_progress)

    def progress(step: int, total: int, phase: str) -> None:
        bar.total = total
        bar.n = step
        bar.set_description(phase)
        bar.refresh()

    config_flags = {"--game": args.game, "--preset": args.preset, "--seed": args.seed, "--steps": args.steps,
                    "--set": args.set or None}
    given = [flag for flag, value in config_flags.items() if value is not None]
    run_dir = RunDir(args.resume or args.run_dir) if args.resume or args.run_dir else None
    if args.resume and run_dir is not None:  # --resume X: X must have a checkpoint
        from twm_core.trainer import Trainer

        trainer = Trainer.resume(run_dir, args.device, progress)
    elif run_dir is not None and run_dir.config_path.exists():  # the run directory's config.json decides
        if given:
            raise ValueError(f"{run_dir.path} already holds a run: its config.json decides, so drop {', '.join(given)}")
        trainer = open_trainer(run_dir, args.device, progress)
    else:
        overrides = parse_assignments(args.set or [])
        if args.steps is not None:
            overrides["train.total_steps"] = args.steps
        cfg = make_config(args.preset or "atari100k", args.game or "Pong", args.seed or 0, overrides)
        run_dir = run_dir or RunDir(Path(args.runs_root) / new_run_id(cfg.env.game, cfg.preset, cfg.seed))
        if attempt_leftovers(run_dir):
            raise ValueError(f"{run_dir.path} holds files of another run but no config.json: use a new --run-dir")
        trainer = open_trainer(prepare_run(run_dir, cfg), args.device, progress)
    print(f"run directory: {run_dir.path}", file=sys.stderr)
    summary = trainer.run()
    bar.close()
    state = "stopped early (checkpoint saved)" if trainer.stopped else "finished"
    print(f"{state}: {trainer.replay.size} env steps, {trainer.counters.train_steps} training steps, "
          f"run directory {run_dir.path}")
    for key, value in summary.items():
        print(f"  {key:<28} {value:.4g}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from twm_core.agent import load_agent
    from twm_core.checkpoint import resolve_checkpoint
    from twm_core.checkpoint_evaluation import evaluate_checkpoint, play
    from twm_core.evaluation import summarize
    from twm_core.run_dir import RunDir

    run_dir = RunDir(args.run_dir)
    which = args.checkpoint if args.checkpoint == "latest" else int(args.checkpoint)
    path = resolve_checkpoint(run_dir, which)
    agent = load_agent(path, args.device if args.device != "auto" else _auto_device(), run_dir=run_dir)
    if args.record:  # the record in <run_dir>/evals/, written as it goes (what the Checkpoints page lists)
        record = evaluate_checkpoint(run_dir, agent.step, args.episodes, args.seed, agent.device, agent)
        summary = record.summary
    else:
        summary = summarize(agent.config.env.game, play(agent, args.episodes, args.seed), prefix="")
    print(f"{agent.config.env.game}: {args.episodes} episodes at step {agent.step} of {run_dir.path}")
    for key, value in summary.items():
        print(f"  {key:<14} {value:.4g}")
    if "hns" not in summary:
        print("  (no human-normalized score: the game has no reference scores)")
    return 0


def _auto_device() -> str:
    from twm_core.performance import resolve_device

    return str(resolve_device("auto"))


def cmd_report(args: argparse.Namespace) -> int:
    from twm_core.report import build_report, collect_runs, presets_of, report_format, report_markdown, write_report

    if args.out:
        report_format(args.out)  # a bad suffix fails before any work
    results, skipped = collect_runs(args.runs)
    for skip in skipped:
        print(f"skipped {skip.path}: {skip.reason}", file=sys.stderr)
    if not results:
        raise ValueError(f"no usable runs: none of the {len(skipped)} run(s) or path(s) given has a final evaluation")
    report = build_report(results, reps=args.reps, seed=args.seed, skipped=skipped, preset=args.preset)
    print(report_markdown(report), end="")
    others = [name for name in presets_of(results) if name != report["meta"]["preset"]]
    if others:
        print(f"runs of other presets are left out (a report never pools presets): {', '.join(others)}; "
              f"report them with --preset NAME", file=sys.stderr)
    if args.out:
        print(f"report written to {write_report(report, args.out)}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="twm", description="TWM: Transformer-based World Models (ICLR 2023)")
    sub = parser.add_subparsers(dest="command", required=True)

    describe = sub.add_parser("describe", help="print the resolved config and parameter counts")
    describe.add_argument("--preset", default="atari100k", choices=sorted(PRESETS))
    describe.add_argument("--game", default="Pong")
    describe.add_argument("--seed", type=int, default=0)
    describe.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    describe.add_argument("--json", action="store_true", help="machine-readable output")
    describe.set_defaults(func=cmd_describe)

    train = sub.add_parser("train", help="train (or resume) a run", description=(
        "Train a new run from --game/--preset/--seed/--steps/--set (written to <run-dir>/config.json first), or "
        "continue the run in --run-dir from its config.json: resumed from its latest checkpoint if it has one."))
    train.add_argument("--game", default=None, help="Atari game or 'Catch' (default Pong)")
    train.add_argument("--preset", default=None, choices=sorted(PRESETS), help="default atari100k")
    train.add_argument("--seed", type=int, default=None, help="default 0")
    train.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    train.add_argument("--steps", type=int, default=None, help="environment steps (train.total_steps)")
    train.add_argument("--run-dir", default=None, help="run directory (default: <runs-root>/<new run id>); if it "
                       "holds a config.json, that config is trained (resumed from its latest checkpoint)")
    train.add_argument("--runs-root", default="checkpoints")
    train.add_argument("--set", action="append", default=None, metavar="KEY=VALUE", help="config override")
    train.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue a run from its checkpoint")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(func=cmd_train)

    evaluate = sub.add_parser("eval", help="evaluate a checkpoint (raw and human-normalized scores)")
    evaluate.add_argument("run_dir")
    evaluate.add_argument("--episodes", type=int, default=100)
    evaluate.add_argument("--checkpoint", default="latest", help="'latest' or an env step")
    evaluate.add_argument("--seed", type=int, default=12345)
    evaluate.add_argument("--device", default="auto")
    evaluate.add_argument("--record", action="store_true",
                          help="also write the result (and progress as it goes) to <run_dir>/evals/")
    evaluate.set_defaults(func=cmd_eval)


    report = sub.add_parser("report", help="aggregate report of finished runs (per-game scores, HNS, bootstrap CIs)")
    report.add_argument("runs", nargs="+", metavar="RUNS", help="run directories, or directories holding runs")
    report.add_argument("--out", default=None, help="also write the report: .json or .md")
    report.add_argument("--reps", type=int, default=2000, help="bootstrap resamples (0: no CIs)")
    report.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    report.add_argument("--preset", default=None, help="the preset to report (default: atari100k when present, "
                        "else the one with the most runs); runs of other presets are listed as left out")
    report.set_defaults(func=cmd_report)

    # Commands from other packages of this distribution (`twm sweep` is the backend's: it drives its job
    # manager), registered as entry points of the group `twm.commands` in pyproject.toml, so twm_core imports none.
    for command in entry_points(group="twm.commands"):
        command.load()(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from twm_core.checkpoint import CheckpointError

    try:
        return int(args.func(args) or 0)
    except (ConfigError, ValueError, FileNotFoundError, CheckpointError) as e:
        print(f"twm: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
