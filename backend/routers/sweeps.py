"""Sweeps and reports: `POST /api/sweeps` · `GET /api/sweeps` · `GET /api/sweeps/{id}` · `.../cancel` ·
`.../report` · `GET /api/report?runs=...` · `GET /api/executor`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, status

from backend import runs
from backend.deps import JobsDep, SettingsDep, check_object_id, not_found
from backend.executors import ExecutorError
from backend.jobs import InvalidJob, JobConflict
from backend.schemas.sweeps import Report, SweepList, SweepRequest, SweepStatus
from backend.sweeps import Sweep, SweepManager, SweepNotFound

router = APIRouter(tags=["sweeps"])

MAX_REPORT_RUNS = 1000


def _sweeps(jobs: JobsDep) -> SweepManager:
    return SweepManager(jobs)


SweepsDep = Annotated[SweepManager, Depends(_sweeps)]


def _out(sweep: Sweep) -> SweepStatus:
    return SweepStatus.model_validate(sweep)


def _get(sweeps: SweepManager, sweep_id: str) -> Sweep:
    try:
        return sweeps.get(check_object_id("sweep", sweep_id))
    except SweepNotFound as e:
        raise not_found("sweep", sweep_id) from e


@router.post("/sweeps", status_code=status.HTTP_201_CREATED, responses={422: {"description": "Invalid request"}})
def create_sweep(body: SweepRequest, sweeps: SweepsDep) -> SweepStatus:
    """Validate every (game, seed) run, then queue them all; they start as the executor has room."""
    try:
        return _out(sweeps.submit(**body.model_dump()))
    except InvalidJob as e:
        raise HTTPException(422, str(e)) from e


@router.get("/sweeps")
def list_sweeps(sweeps: SweepsDep) -> SweepList:
    """Every sweep, newest first."""
    return SweepList(sweeps=[_out(sweep) for sweep in sweeps.list_sweeps()])


@router.get("/sweeps/{sweep_id}", responses={404: {"description": "Unknown sweep id"}})
def get_sweep(sweep_id: str, sweeps: SweepsDep) -> SweepStatus:
    """One sweep: state, counts per job state, overall progress, and its jobs."""
    return _out(_get(sweeps, sweep_id))


@router.post("/sweeps/{sweep_id}/cancel", responses={404: {"description": "Unknown sweep id"},
                                                      409: {"description": "Already ended"}})
def cancel_sweep(sweep_id: str, sweeps: SweepsDep) -> SweepStatus:
    """Cancel every job of the sweep that has not ended (running ones checkpoint first)."""
    _get(sweeps, sweep_id)
    try:
        return _out(sweeps.cancel(sweep_id))
    except JobConflict as e:
        raise HTTPException(status.HTTP_409_CONFLICT, str(e)) from e


@router.get("/sweeps/{sweep_id}/report", responses={404: {"description": "Unknown sweep id"},
                                                     409: {"description": "No run has a final evaluation yet"}})
def sweep_report(sweep_id: str, sweeps: SweepsDep,
                 reps: Annotated[int, Query(ge=100, le=20_000)] = 2000, seed: int = 0) -> Report:
    """Per-game final scores against the paper's Table 1, aggregates with 95% bootstrap CIs, performance profiles."""
    return _report(_get(sweeps, sweep_id).run_dirs, reps, seed)


@router.get("/report", responses={404: {"description": "Unknown run id"},
                                  409: {"description": "No run has a final evaluation yet"}})
def runs_report(settings: SettingsDep, runs_param: Annotated[str, Query(alias="runs", min_length=1)],
                reps: Annotated[int, Query(ge=100, le=20_000)] = 2000, seed: int = 0) -> Report:
    """The same report for any runs: `?runs=<run_id>,<run_id>,...`."""
    run_ids = [part.strip() for part in runs_param.split(",") if part.strip()]
    if not run_ids or len(run_ids) > MAX_REPORT_RUNS:
        raise HTTPException(422, f"runs: give 1 to {MAX_REPORT_RUNS} comma-separated run ids")
    try:
        dirs = [runs.resolve_run(settings.runs_dir, run_id).path for run_id in run_ids]
    except runs.RunNotFoundError as e:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(e)) from e
    return _report(dirs, reps, seed)


@router.get("/executor")
def executor(jobs: JobsDep) -> dict[str, Any]:
    """What runs jobs: `local` subprocesses or a Ray cluster (its address and resources)."""
    try:
        return {**jobs.executor.describe(), "max_concurrent_jobs": jobs.max_concurrent}
    except ExecutorError as e:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(e)) from e


def _report(run_dirs: list[Path], reps: int, seed: int) -> Report:
    from twm_core.report import SkippedRun, build_report, read_run_result  # lazy: numpy/scipy, only when asked

    results, skipped = [], []
    for path in run_dirs:
        result = read_run_result(path)
        if isinstance(result, str):
            skipped.append(SkippedRun(Path(path.name), result))
        else:
            results.append(result)
    if not results:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f"no run has a final evaluation yet ({len(skipped)} run(s) without one)")
    return Report.model_validate(build_report(results, reps=reps, seed=seed, skipped=skipped))
