"""Training jobs: `POST /api/jobs` · `GET /api/jobs` · `GET /api/jobs/{job_id}` · `.../cancel` · `.../resume`."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from backend.deps import JobsDep, check_object_id, not_found
from backend.jobs import InvalidJob, Job, JobConflict, JobNotFound
from backend.schemas.jobs import JobList, JobStatus, TrainRequest

router = APIRouter(prefix="/jobs", tags=["jobs"])


def _out(job: Job) -> JobStatus:
    return JobStatus.model_validate(job)


@router.post("", status_code=status.HTTP_201_CREATED, responses={422: {"description": "Invalid request"}})
def create_job(body: TrainRequest, jobs: JobsDep) -> JobStatus:
    """Validate the config, then start the training subprocess (or queue it when all slots are busy)."""
    try:
        return _out(jobs.submit(**body.model_dump()))
    except InvalidJob as e:
        raise HTTPException(422, str(e)) from e


@router.get("")
def list_jobs(jobs: JobsDep) -> JobList:
    """Every job, newest first."""
    return JobList(jobs=[_out(job) for job in jobs.list_jobs()])


@router.get("/{job_id}", responses={404: {"description": "Unknown job id"}})
def get_job(job_id: str, jobs: JobsDep) -> JobStatus:
    """One job: state, progress, pid, times, exit code and error."""
    try:
        return _out(jobs.get(check_object_id("job", job_id)))
    except JobNotFound as e:
        raise not_found("job", job_id) from e


@router.post("/{job_id}/cancel", responses={404: {"description": "Unknown job id"}, 409: {"description": "Ended"}})
def cancel_job(job_id: str, jobs: JobsDep) -> JobStatus:
    """Queued: cancelled now. Running: SIGTERM (checkpoint, then exit), SIGKILL after the grace period."""
    try:
        return _out(jobs.cancel(check_object_id("job", job_id)))
    except JobNotFound as e:
        raise not_found("job", job_id) from e
    except JobConflict as e:
        raise HTTPException(status.HTTP_409_CONFLICT, str(e)) from e


@router.post("/{job_id}/resume", responses={404: {"description": "Unknown job id"}, 409: {"description": "Conflict"}})
def resume_job(job_id: str, jobs: JobsDep) -> JobStatus:
    """Start a new attempt (`twm train --resume`) of a cancelled or failed job from its last checkpoint."""
    try:
        return _out(jobs.resume(check_object_id("job", job_id)))
    except JobNotFound as e:
        raise not_found("job", job_id) from e
    except JobConflict as e:
        raise HTTPException(status.HTTP_409_CONFLICT, str(e)) from e
