"""Latency of the inspect endpoints through FastAPI's TestClient: `POST /api/runs/{id}/imagine` and
`POST /api/runs/{id}/attention` (request validation, checkpoint from the model cache, env start, imagination,
PNG encoding, JSON), in ms per request.

`--run-dir` names an existing run (its parent is the app's runs dir; job records go to a temporary database). Without
it, a tiny run is trained first in a temporary directory: game Catch, the debug preset, 130 env steps (100 prefill),
pretrain budget 2000, no evaluation, a checkpoint at step 100 (a few seconds on a CPU).

`imagine_first` is the first request alone (it loads the checkpoint into the registry); `imagine` and `attention`
are the warm requests. `--preset`, `--game` and `--set` only shape the tiny run (debug only); a given run uses
its own config.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import Context, Report, make_parser, repeat, setup, timed, to_ms
from twm_core.config_parsing import parse_assignments
from twm_core.presets import make_config
from twm_core.run_dir import RunDir, read_json
from twm_core.trainer import Trainer

TINY_RUN_OVERRIDES = {"train.total_steps": 130, "replay.prefill": 100, "train.pretrain_budget": 2000,
                      "train.eval_episodes": 0, "train.final_eval_episodes": 0, "train.checkpoint_every": 100}


def make_tiny_run(ctx: Context, runs_dir: Path) -> RunDir:
    """A finished debug-preset run of `--game` (default Catch) with checkpoints, made by the real trainer."""
    overrides = {**TINY_RUN_OVERRIDES, **parse_assignments(ctx.args.set)}
    cfg = make_config("debug", ctx.args.game, ctx.cfg.seed, overrides)
    run_dir = RunDir(runs_dir / f"bench-{ctx.args.game.lower()}-debug")
    Trainer(cfg, run_dir, str(ctx.device)).run()
    return run_dir


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = make_parser("endpoints", __doc__, repeats=10, warmup=1, game="Catch")
    parser.set_defaults(preset="debug")
    parser.add_argument("--run-dir", type=Path, default=None, help="existing run directory; without it, a tiny run")
    parser.add_argument("--checkpoint", default="latest", help="checkpoint step or 'latest'")
    parser.add_argument("--horizon", type=int, default=16, help="imagine: imagined steps")
    parser.add_argument("--query-step", type=int, default=15, help="attention: imagined step of the query")
    parser.add_argument("--layer", type=int, default=None, help="attention: also the full matrix of this layer")
    parser.add_argument("--policy-steps", type=int, default=0, help="real policy steps before the start")
    ctx = setup(parser.parse_args(argv))
    args = ctx.args
    if args.run_dir is None and args.preset != "debug":
        raise SystemExit("the tiny run uses the debug preset: pass --run-dir for a run of another preset")

    # Imported here: the other benchmarks need neither FastAPI nor the backend.
    from fastapi.testclient import TestClient

    from backend.main import create_app
    from backend.settings import Settings

    checkpoint: int | str = int(args.checkpoint) if args.checkpoint.isdigit() else args.checkpoint
    start = {"kind": "reset", "policy_steps": args.policy_steps}
    imagine_body = {"checkpoint": checkpoint, "seed": args.seed, "start": start, "horizon": args.horizon}
    attention_body = {"checkpoint": checkpoint, "seed": args.seed, "start": start, "query_step": args.query_step,
                      "layer": args.layer}
    with tempfile.TemporaryDirectory(prefix="twm-bench-") as tmp:
        run_dir = RunDir(args.run_dir) if args.run_dir is not None else make_tiny_run(ctx, Path(tmp) / "runs")
        config = read_json(run_dir.config_path)
        if config is None:
            raise SystemExit(f"{run_dir.path} holds no config.json")
        settings = Settings(runs_dir=run_dir.path.parent, db_path=Path(tmp) / "jobs.db", device=str(ctx.device))

        with TestClient(create_app(settings)) as client:
            def post(endpoint: str, body: dict[str, Any]) -> None:
                response = client.post(f"/api/runs/{run_dir.run_id}/{endpoint}", json=body)
                if response.status_code != 200:
                    raise RuntimeError(f"{endpoint}: HTTP {response.status_code}: {response.text[:500]}")

            _, first_s = timed(ctx.device, post, "imagine", imagine_body)

            def step() -> dict[str, float]:
                _, imagine_s = timed(ctx.device, post, "imagine", imagine_body)
                _, attention_s = timed(ctx.device, post, "attention", attention_body)
                return {"imagine": imagine_s, "attention": attention_s}

            samples = repeat(args, step)

    report = Report("endpoints", ctx, config=config, sizes={
        "run_dir": str(args.run_dir) if args.run_dir is not None else "tiny debug run (temporary)",
        "game": config["env"]["game"], "checkpoint": checkpoint, "horizon": args.horizon,
        "query_step": args.query_step, "layer": args.layer, "policy_steps": args.policy_steps})
    report.add("imagine_first", to_ms([first_s]), "ms", "first /imagine (loads the checkpoint)")
    report.add("imagine", to_ms(samples["imagine"]), "ms", "POST /api/runs/{id}/imagine, model cached")
    report.add("attention", to_ms(samples["attention"]), "ms", "POST /api/runs/{id}/attention, model cached")
    return report.finish()


if __name__ == "__main__":
    main()
