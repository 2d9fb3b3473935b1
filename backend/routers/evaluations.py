"""Checkpoint evaluations: `POST /api/runs/{run_id}/checkpoints/{step}/evaluations` starts one (a `twm eval`
process, `backend.evaluations`), `GET /api/runs/{run_id}/evaluations` lists them with their progress and scores."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status

from backend.evaluations import EvaluationBusy, EvaluationManager
from backend.routers.runs import RunDep
from backend.schemas.evaluations import Evaluation, EvaluationList, EvaluationRequest
from twm_core.checkpoint import CheckpointNotFoundError

router = APIRouter(prefix="/runs", tags=["evaluations"])


def _manager(request: Request) -> EvaluationManager:
    manager: EvaluationManager = request.app.state.evaluations
    return manager


ManagerDep = Annotated[EvaluationManager, Depends(_manager)]


@router.post("/{run_id}/checkpoints/{step}/evaluations", response_model=Evaluation,
             status_code=status.HTTP_202_ACCEPTED,
             responses={404: {"description": "Unknown run or checkpoint"},
                        409: {"description": "Already being evaluated so, or too many evaluations running"}})
def start_evaluation(run: RunDep, step: int, manager: ManagerDep,
                     body: EvaluationRequest | None = None) -> Evaluation:
    """Evaluate checkpoint `step`: `episodes` episodes of its policy under the evaluation protocol (no no-op
    starts, all lives, raw scores); follow it with `GET .../evaluations`."""
    body = body or EvaluationRequest()
    try:
        record = manager.start(run, step, body.episodes, body.seed)
    except CheckpointNotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except EvaluationBusy as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, str(exc)) from exc
    return Evaluation(**asdict(record))


@router.get("/{run_id}/evaluations", response_model=EvaluationList)
def list_evaluations(run: RunDep, manager: ManagerDep) -> EvaluationList:
    """Every evaluation of the run's checkpoints, by step: running ones with their progress, finished ones with
    their scores; a damaged record is listed with its reason."""
    return EvaluationList(run_id=run.run_id, evaluations=[Evaluation(**asdict(r)) for r in manager.list(run)])
