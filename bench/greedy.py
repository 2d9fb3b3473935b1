"""How much does sampling cost a trained policy? One checkpoint evaluated with sampled and with greedy actions.

The reference acts and evaluates with actions sampled from the policy (temperature 1), so the entropy floor of the
actor loss (Γ, `ac.entropy_threshold`) keeps some randomness in every score. This plays the same episodes (same env
seeds) twice: with sampled actions, as `twm eval` does, and with the policy's argmax (temperature 0). A small gap
says the score is limited by what the policy has learned, not by its sampling.

    python -m bench.greedy checkpoints/<run_id> --episodes 200 [--checkpoint latest|STEP] [--threads 1] [--json F]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.common import machine_info
from twm_core.agent import load_agent
from twm_core.checkpoint import resolve_checkpoint
from twm_core.checkpoint_evaluation import play
from twm_core.run_dir import RunDir

TEMPERATURES = {"sampled": 1.0, "greedy": 0.0}


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.greedy", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a run directory")
    parser.add_argument("--checkpoint", default="latest", help="'latest' or an env step")
    parser.add_argument("--episodes", type=int, default=200, help="episodes per way of acting")
    parser.add_argument("--seed", type=int, default=777, help="seed of the episodes (the same for both)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--json", type=Path, default=None, help="write the record here")
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = make_parser().parse_args(argv)
    if args.episodes < 1:
        raise SystemExit("--episodes must be >= 1")
    torch.set_num_threads(args.threads)
    run_dir = RunDir(args.run_dir)
    path = resolve_checkpoint(run_dir, args.checkpoint)
    agent = load_agent(path, run_dir=run_dir)
    record: dict[str, Any] = {"benchmark": "greedy", "run_dir": str(args.run_dir), "checkpoint": path.name,
                              "step": agent.step, "episodes": args.episodes, "seed": args.seed,
                              "machine": machine_info(agent.device)}
    for name, temperature in TEMPERATURES.items():
        results = play(agent, args.episodes, args.seed, temperature=temperature)  # `twm eval`'s episodes
        scores = np.array([r.score for r in results])
        record[name] = {"temperature": temperature, "score_mean": float(scores.mean()),
                        "score_std": float(scores.std()),
                        "standard_error": float(scores.std() / np.sqrt(len(scores))),
                        "scores": scores.tolist()}
        error = record[name]["standard_error"]
        print(f"{name:8s} (temperature {temperature:g}): mean {scores.mean():.2f} ± {error:.2f} over {len(scores)} "
              "episodes")
    record["greedy_minus_sampled"] = record["greedy"]["score_mean"] - record["sampled"]["score_mean"]
    if args.json is not None:
        args.json.write_text(json.dumps(record, indent=2))
        print(f"wrote {args.json}")
    return record


if __name__ == "__main__":
    main()
