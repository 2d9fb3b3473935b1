"""`GET /api/demo` (is the shipped demo installed, and its facts) and `POST /api/demo` (install it: idempotent).

The demo is a learned Catch model shipped with the package (`twm_core.demo`); installing copies it into the runs
directory as the run `demo-catch`, after which every run endpoint (checkpoints, imagine, attention, sessions) serves
it like any other run. Failures are 409 with the reason (a damaged shipped file, a user's run of that name, a full
disk), never a 500.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, status

from backend.deps import RegistryDep, SettingsDep
from backend.schemas.demo import DemoFacts, DemoStatus
from twm_core import demo
from twm_core.file_io import describe_error

router = APIRouter(prefix="/demo", tags=["demo"])


def _status(settings: SettingsDep, installed_now: bool = False) -> DemoStatus:
    installed = demo.installed_manifest(settings.runs_dir)
    problem = None
    try:
        manifest: dict[str, Any] | None = demo.read_manifest()
    except demo.DemoError as exc:
        manifest, problem = installed, str(exc)  # the installed copy still says what it is
    facts = DemoFacts.model_validate(manifest) if manifest is not None else None
    return DemoStatus(run_id=demo.DEMO_RUN_ID, available=problem is None, installed=installed is not None,
                      installed_now=installed_now, facts=facts, problem=problem,
                      links=demo.links(demo.DEMO_RUN_ID, facts.checkpoint_step) if facts is not None else {})


@router.get("", response_model=DemoStatus)
def demo_status(settings: SettingsDep) -> DemoStatus:
    """Whether the demo run is in the runs directory, and the shipped demo's facts (score, build time, ...)."""
    return _status(settings)


@router.post("", response_model=DemoStatus, responses={409: {"description": "The demo cannot be installed"}})
def install_demo(settings: SettingsDep, registry: RegistryDep) -> DemoStatus:
    """Copy the shipped demo into the runs directory as `demo-catch` (checked against its sha256 manifest); when it
    is there already, nothing changes. Answers with its run id, checkpoint step, score and dashboard links."""
    try:
        run, installed_now = demo.install(settings.runs_dir)
    except demo.DemoError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    except OSError as exc:  # a full disk, a read-only runs directory: say so without the server's paths
        raise HTTPException(status.HTTP_409_CONFLICT, f"cannot install the demo: {describe_error(exc)}") from exc
    if demo.installed_manifest(settings.runs_dir) is None:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f"a run named {run.run_id!r} exists and is not the demo; rename or delete it first")
    if installed_now:
        registry.forget(run.run_id)  # a model cached under this id before (a deleted run) is not this one
    return _status(settings, installed_now)
