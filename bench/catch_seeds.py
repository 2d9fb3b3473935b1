"""Does the `catch` preset learn Catch on every seed, in how many minutes? One full training run per seed.

Each seed is trained, one after another, by `python -m twm_core.cli train --preset catch --game Catch --seed S
--device cpu --no-progress` in a subprocess (its own process: torch's thread count, seeds and the env builder are
process-wide) with `OMP_NUM_THREADS=--threads`, on a fresh run directory: a temporary one, or `--keep DIR/seed_S`
to keep it for diagnosis (metrics.jsonl, scores.jsonl, checkpoints, replay).

Per seed the record holds the final evaluation's mean score (`eval/final_score_mean`, the 50-episode evaluation at
the end), the evaluation curve (the `eval` means per env step), the wall minutes of the whole subprocess (env
building, prefill, pretraining, training, evaluations), its CPU minutes (user + system: on a loaded machine the
wall minutes also count the time others held the cores) and whether it met `--target` within `--minutes` (wall).
Scores are read with `twm_core.run_reader.RunReader`: from scores.jsonl, else from the metrics rows.

    python -m bench.catch_seeds --seeds 0-4 --threads 2 --out out/catch_seeds.json
    python -m bench.catch_seeds --seeds 1 --steps 2000 --keep /tmp/catch-runs --set ac.actor_lr=1e-3

For Catch a random policy scores about -1.34 and a perfect one +5 (5 balls per episode, ±1 each).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from bench.common import machine_info
from twm_core.config_parsing import parse_assignments
from twm_core.presets import make_config
from twm_core.run_dir import RunDir
from twm_core.run_reader import RunReader

PRESET, GAME = "catch", "Catch"


# ------------------------------------------------------------------------------------------------------ arguments
def parse_seeds(text: str) -> list[int]:
    """`"0-4"` → [0, 1, 2, 3, 4]; `"1,3"` → [1, 3]; `"0-1,5"` → [0, 1, 5]. Order kept, duplicates dropped."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-")
        try:
            values = range(int(lo), int(hi) + 1) if sep else [int(part)]
        except ValueError:
            raise argparse.ArgumentTypeError(f"seeds are N, N-M or a comma list of them, got {text!r}") from None
        if sep and int(hi) < int(lo) or any(v < 0 for v in values):
            raise argparse.ArgumentTypeError(f"seeds must be >= 0 and ranges ascending, got {text!r}")
        seeds.extend(v for v in values if v not in seeds)
    if not seeds:
        raise argparse.ArgumentTypeError(f"no seeds in {text!r}")
    return seeds


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.catch_seeds", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--seeds", type=parse_seeds, default=parse_seeds("0-4"), help="e.g. 0-4, 1 or 0,2,3")
    parser.add_argument("--set", "--override", dest="set", action="append", default=[], metavar="KEY=VALUE",
                        help="dotted config override on the catch preset (repeatable; the grammar of twm --set)")
    parser.add_argument("--steps", type=int, default=None, help="env steps (train.total_steps; default the preset's)")
    parser.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of each training process")
    parser.add_argument("--target", type=float, default=4.0, help="final score a seed must reach")
    parser.add_argument("--minutes", type=float, default=10.0, help="wall minutes a seed may take")
    parser.add_argument("--keep", type=Path, default=None, help="keep the run directories as DIR/seed_S")
    parser.add_argument("--out", "--json", dest="out", type=Path, default=None, help="write the JSON record here")
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The arguments, with the overrides checked by building the config once (a typo fails before any training)."""
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.threads < 1 or (args.steps is not None and args.steps < 1) or args.minutes <= 0:
        parser.error("--threads and --steps must be >= 1, --minutes > 0")
    try:
        overrides = parse_assignments(args.set)
        if args.steps is not None:
            overrides["train.total_steps"] = args.steps
        make_config(PRESET, GAME, args.seeds[0], overrides)
    except Exception as exc:  # ConfigError and the validation errors of with_overrides
        parser.error(f"bad --set/--steps: {exc}")
    return args


def train_command(args: argparse.Namespace, seed: int, run_dir: Path) -> list[str]:
    """The `twm train` command line of one seed."""
    cmd = [sys.executable, "-m", "twm_core.cli", "train", "--preset", PRESET, "--game", GAME, "--seed", str(seed),
           "--device", "cpu", "--no-progress", "--run-dir", str(run_dir)]
    if args.steps is not None:
        cmd += ["--steps", str(args.steps)]
    for item in args.set:
        cmd += ["--set", item]
    return cmd


# ------------------------------------------------------------------------------------------------------ results
def seed_result(run_dir: Path, seed: int, minutes: float, returncode: int, target: float,
                limit: float) -> dict[str, Any]:
    """One seed's row of the record, read from its run directory."""
    reader = RunReader(RunDir(run_dir))
    evaluations = reader.evaluations()
    curve = [{"step": e.step, "score_mean": e.mean} for e in evaluations if e.kind == "eval"]
    finals = [e for e in evaluations if e.kind == "final_eval"]
    final = finals[-1].mean if finals else None
    return {
        "seed": seed, "final_score_mean": final, "eval_curve": curve, "minutes": minutes, "returncode": returncode,
        "passed": returncode == 0 and final is not None and final >= target and minutes <= limit,
        "run_dir": str(run_dir),
    }


def summarize_seeds(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Seeds run and passed, and the min / mean of the final scores and max / mean of the minutes."""
    finals = [r["final_score_mean"] for r in rows if r["final_score_mean"] is not None]
    minutes = [r["minutes"] for r in rows]
    return {"seeds": len(rows), "passed": sum(r["passed"] for r in rows),
            "final_min": min(finals) if finals else None,
            "final_mean": sum(finals) / len(finals) if finals else None,
            "minutes_max": max(minutes) if minutes else None,
            "minutes_mean": sum(minutes) / len(minutes) if minutes else None}


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """One line per seed: final score, minutes, pass, then the evaluation curve as step:score."""
    def num(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    lines = [f"{'seed':>4}  {'final':>6}  {'min':>6}  {'cpu min':>7}  pass  eval curve (step:score)", "-" * 70]
    for r in rows:
        curve = " ".join(f"{p['step']}:{p['score_mean']:.2f}" for p in r["eval_curve"])
        status = "yes" if r["passed"] else ("no" if r["returncode"] == 0 else f"rc={r['returncode']}")
        cpu = num(r.get("cpu_minutes"))
        lines.append(f"{r['seed']:>4}  {num(r['final_score_mean']):>6}  {r['minutes']:>6.1f}  {cpu:>7}  {status:<4}  "
                     f"{curve}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------ main
def run_seed(args: argparse.Namespace, seed: int, root: Path) -> dict[str, Any]:
    """Train one seed in `root/seed_S` (its log beside it), timed from spawn to exit."""
    run_dir = root / f"seed_{seed}"
    if run_dir.exists():
        raise SystemExit(f"{run_dir} exists: a kept run is never trained over (pick another --keep)")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    log = root / f"seed_{seed}.log"
    cpu_before = _children_cpu_seconds()
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.run(train_command(args, seed, run_dir), env=env, stdout=out, stderr=subprocess.STDOUT)
    minutes = (time.perf_counter() - start) / 60
    cpu_minutes = (_children_cpu_seconds() - cpu_before) / 60
    if proc.returncode != 0:
        print(f"seed {seed}: train exited {proc.returncode}; last lines of {log}:\n"
              + "\n".join(log.read_text(errors="replace").splitlines()[-10:]), file=sys.stderr)
    return {**seed_result(run_dir, seed, minutes, proc.returncode, args.target, args.minutes),
            "cpu_minutes": cpu_minutes}


def _children_cpu_seconds() -> float:
    """User + system CPU seconds of the finished child processes: on a shared machine a seed's wall minutes
    include the time others held the cores; its CPU minutes (over --threads) bound what it needs on a quiet one."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def build_record(args: argparse.Namespace, overrides: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The JSON record: machine, settings, overrides, the config of the first seed, the seed rows, the summary."""
    machine = machine_info(torch.device("cpu"))
    machine["omp_num_threads"] = str(args.threads)  # what each training process ran with
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    return {
        "benchmark": "catch_seeds", "created": datetime.now(UTC).isoformat(timespec="seconds"), "preset": PRESET,
        "machine": machine, "settings": settings, "overrides": overrides,
        "config": make_config(PRESET, GAME, args.seeds[0], overrides).to_dict(),
        "seeds": rows, "summary": summarize_seeds(rows),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    overrides = parse_assignments(args.set)
    if args.steps is not None:
        overrides["train.total_steps"] = args.steps
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="twm-catch-seeds-") as tmp:
        root = args.keep if args.keep is not None else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        for seed in args.seeds:
            row = run_seed(args, seed, root)
            if args.keep is None:
                row["run_dir"] = None  # deleted with the temporary directory
            rows.append(row)
            print(f"seed {seed}: final {row['final_score_mean']}, {row['minutes']:.1f} min", flush=True)
            if args.out is not None:  # after every seed: a long sweep that is stopped keeps what it measured
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(build_record(args, overrides, rows), indent=2) + "\n")
    record = build_record(args, overrides, rows)
    s = record["summary"]
    print(f"catch_seeds · {len(rows)} seed(s) · {args.threads} thread(s) · target {args.target} in "
          f"{args.minutes} min · overrides {overrides or 'none'}")
    print(format_table(rows))
    print(f"passed {s['passed']}/{s['seeds']}")
    print(json.dumps({"seeds": [{k: r.get(k) for k in ("seed", "final_score_mean", "minutes", "cpu_minutes", "passed")}
                                for r in rows], "summary": s}))
    if args.out is not None:
        args.out.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {args.out}")
    return record


if __name__ == "__main__":
    main()
