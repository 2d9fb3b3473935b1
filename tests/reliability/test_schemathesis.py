"""Property-based run of the live app against its own OpenAPI schema (issue #12), with schemathesis.

Every operation gets `MAX_EXAMPLES` generated requests (valid and invalid by the schema) in-process over ASGI; no
answer may be a 5xx. The app runs on an empty runs dir, so run, session and model routes answer 404 at once, and
with `python_executable=/bin/false`, so a job that passes validation is accepted but no trainer starts. Left out:
the server-sent events stream (`/api/runs/{run_id}/events`), which streams until the client leaves.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from backend.main import create_app
from backend.settings import Settings

MAX_EXAMPLES = 25


# The schema is read at collection (parametrize needs its operations), so the app and its runs dir exist from import.
# Schemathesis runs the app's lifespan (job manager, model registry) itself, once per operation's test.
_RUNS = Path(tempfile.mkdtemp(prefix="twm-schemathesis-"))
APP = create_app(Settings(runs_dir=_RUNS / "runs", device="cpu", python_executable="/bin/false",
                          job_poll_seconds=0.2))
schema = schemathesis.openapi.from_asgi("/openapi.json", APP).exclude(path="/api/runs/{run_id}/events")


@pytest.fixture(scope="module", autouse=True)
def remove_runs_dir() -> Iterator[None]:
    yield
    shutil.rmtree(_RUNS, ignore_errors=True)


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=[not_a_server_error])
