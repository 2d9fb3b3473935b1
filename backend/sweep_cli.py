"""`twm sweep`: submit one run per (game, seed) through the backend's job manager and follow it to the end.

The job database and runs directory are the backend's (`TWM_*` settings, overridden by the flags), so a sweep
started here shows in the dashboard too. In the foreground (the default) this process watches the jobs: Ctrl-C
cancels the sweep (running jobs checkpoint first; a second Ctrl-C leaves them running). With `--detach` it only
queues them, for a backend with the same executor to start.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from types import FrameType
from typing import TYPE_CHECKING, Any

from twm_core.presets import PRESETS

if TYPE_CHECKING:
    from backend.jobs import JobManager
    from backend.sweeps import Sweep, SweepManager


def add_command(sub: Any) -> None:
    """Add `sweep` to the `twm` subcommands (the `twm.commands` entry point; imports stay light until it runs)."""
    sweep = sub.add_parser("sweep", help="train one run per (game, seed) through the job manager, then report")
    sweep.add_argument("--games", required=True, help="comma-separated games, or 'atari100k' for all 26")
    sweep.add_argument("--seeds", default="0-4", help="seeds: '0-4', '0,2,5' (default 0-4)")
    sweep.add_argument("--preset", default="atari100k", choices=sorted(PRESETS))
    sweep.add_argument("--steps", type=int, default=None, help="environment steps of each run (train.total_steps)")
    sweep.add_argument("--device", default=None, help="auto, cpu, cuda (default: the TWM_DEVICE setting)")
    sweep.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override, every run")
    sweep.add_argument("--executor", choices=("local", "ray"), default=None, help="default: TWM_EXECUTOR or local")
    sweep.add_argument("--ray-address", default=None, help="Ray cluster (default: TWM_RAY_ADDRESS, else local)")
    sweep.add_argument("--max-concurrent", type=int, default=None, help="runs at once (default: executor's room)")
    sweep.add_argument("--max-retries", type=int, default=1, help="retries of a failed run (default 1)")
    sweep.add_argument("--runs-root", default=None, help="runs directory (default: TWM_RUNS_DIR or checkpoints)")
    sweep.add_argument("--name", default=None)
    sweep.add_argument("--out", dest="report_out", default=None, help="write the final report: .json or .md")
    sweep.add_argument("--detach", action="store_true", help="queue the runs and exit (a backend starts them)")
    sweep.set_defaults(func=run_sweep)


def run_sweep(args: argparse.Namespace) -> int:
    """Submit the sweep; follow it unless `--detach`; print and write its report. Exit 0 when every run finished."""
    from backend.jobs import JobManager
    from backend.settings import Settings
    from backend.sweeps import SweepManager
    from twm_core.config_parsing import parse_assignments
    from twm_core.report import report_format

    if args.report_out:
        report_format(args.report_out)  # a bad suffix fails before any run starts

    given = {"runs_dir": args.runs_root, "executor": args.executor, "ray_address": args.ray_address,
             "max_concurrent_jobs": args.max_concurrent}
    settings = Settings(**{key: value for key, value in given.items() if value is not None})
    jobs = JobManager(settings)
    sweeps = SweepManager(jobs)
    sweep = sweeps.submit(args.games, args.seeds, args.preset, args.steps, args.device, parse_assignments(args.set),
                          args.max_retries, args.name)
    out = sys.stdout
    print(f"sweep {sweep.sweep_id}: {len(sweep.jobs)} runs ({len(sweep.games)} games × {len(sweep.seeds)} seeds), "
          f"preset {sweep.preset}, executor {sweep.executor}, runs in {settings.runs_dir}", file=out, flush=True)
    if args.detach:
        return 0
    sweep = _follow(jobs, sweeps, sweep.sweep_id)
    _print_jobs(sweep)
    _report(sweep, args.report_out)
    return 0 if sweep.state == "finished" else 1


def _follow(jobs: JobManager, sweeps: SweepManager, sweep_id: str) -> Sweep:
    from backend.jobs import ENDED_STATES, JobConflict

    interrupted = False

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        nonlocal interrupted
        if interrupted:  # the second Ctrl-C: leave now, the jobs keep running
            raise KeyboardInterrupt
        interrupted = True
        print("cancelling the sweep (Ctrl-C again to leave its jobs running)", file=sys.stderr, flush=True)
        try:
            sweeps.cancel(sweep_id)
        except JobConflict:
            pass

    previous = signal.signal(signal.SIGINT, on_sigint)
    last = ""
    try:
        while True:
            jobs.poll()
            sweep = sweeps.get(sweep_id)
            line = (f"{sweep.state}: {sweep.progress:6.1%} | " +
                    " ".join(f"{state} {count}" for state, count in sweep.counts.items() if count))
            if line != last:
                print(f"[{time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)
                last = line
            if all(job.state in ENDED_STATES for job in sweep.jobs):
                return sweep
            time.sleep(jobs.settings.job_poll_seconds)
    finally:
        signal.signal(signal.SIGINT, previous)


def _print_jobs(sweep: Sweep) -> None:
    print(f"{'game':<18} {'seed':>4} {'state':<10} {'attempt':>7} {'retries':>7}  run")
    for job in sweep.jobs:
        print(f"{job.game:<18} {job.seed:>4} {job.state:<10} {job.attempt:>7} {job.retries:>7}  {job.run_dir}")
        if job.state == "failed" and job.error:
            print("    " + job.error.splitlines()[0])


def _report(sweep: Sweep, out: str | None) -> None:
    from twm_core.report import build_report, collect_runs, report_markdown, write_report

    results, skipped = collect_runs(sweep.run_dirs)
    if not results:
        print("no run has a final evaluation: no report", file=sys.stderr)
        return
    report = build_report(results)
    print(report_markdown(report), end="")
    if out:
        print(f"report written to {write_report(report, out)}", file=sys.stderr)
