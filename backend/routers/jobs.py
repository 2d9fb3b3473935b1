"""Training jobs: `POST /api/jobs` · `GET /api/jobs` · `GET|DELETE /api/jobs/{job_id}` · `.../cancel` ·
`.../resume`."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response, status

from backend.deps import JobsDep, RegistryDep, check_object_id, not_found
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


@router.delete("/{job_id}", status_code=status.HTTP_204_NO_CONTENT,
               responses={404: {"description": "Unknown job id"}, 409: {"description": "Not ended"}})
def delete_job(job_id: str, jobs: JobsDep, registry: RegistryDep, delete_run: bool = False) -> Response:
    """Forget an ended job; with `delete_run=true` also delete its run directory (409 while anything trains it)."""
    try:
        job = jobs.get(check_object_id("job", job_id))
        jobs.delete(job_id, with_run=delete_run)
    except JobNotFound as e:
        raise not_found("job", job_id) from e
    except JobConflict as e:
        raise HTTPException(status.HTTP_409_CONFLICT, str(e)) from e
    if delete_run:
        registry.forget(job.run_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


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
    """Start a new attempt (`twm train --run-dir`) of a cancelled or failed job from its last checkpoint."""
    try:
        return _out(jobs.resume(check_object_id("job", job_id)))
    except JobNotFound as e:
        raise not_found("job", job_id) from e
    except JobConflict as e:
        raise HTTPException(status.HTTP_409_CONFLICT, str(e)) from e
