"""Backend settings, read from `TWM_*` environment variables (pydantic-settings).

There is no module-level instance: `create_app(settings)` receives one, so tests build their own
with a tmp runs dir.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where runs live, which device serves models, and how much work the backend takes on at once."""

    model_config = SettingsConfigDict(env_prefix="TWM_", extra="ignore")

    runs_dir: Path = Path("checkpoints")
    """Root of all run directories (`runs/<run_id>/...`): the only channel between jobs and the backend."""
    db_path: Path | None = None
    """SQLite file holding job records; defaults to `<runs_dir>/jobs.db`."""
    device: str = "auto"
    """`auto` (CUDA when available, else CPU), `cpu`, `cuda` or `cuda:N`."""
    max_concurrent_jobs: int | None = None
    """Training subprocesses allowed at once (extra jobs wait in the queue); None: one per GPU, or one on CPU."""
    cancel_grace_seconds: float = 30.0
    """After a cancel's SIGTERM, how long a job may take to checkpoint and exit before its group gets SIGKILL."""
    job_poll_seconds: float = 1.0
    """Interval of the job monitor (reaps ended subprocesses, enforces cancel grace, starts queued jobs)."""
    events_poll_interval: float = 0.5
    """Seconds between two reads of a live run's files in the server-sent events stream."""
    python_executable: str | None = None
    """Interpreter that runs `-m twm_core.cli train` for jobs; None: the backend's own (`sys.executable`)."""
    executor: Literal["local", "ray"] = "local"
    """How jobs run: `local` subprocesses of this machine, or `ray` actors on a Ray cluster (`pip install .[ray]`).
    With Ray, `runs_dir` must be storage that every node sees (a shared file system)."""
    ray_address: str | None = None
    """Ray cluster to submit to (e.g. `10.0.0.5:6379`); None: a Ray instance running on this machine, else one
    started on demand with `ray start --head` (it outlives the backend; `ray stop` ends it)."""
    ray_namespace: str = "twm"
    """Ray namespace of the job actors (a restarted backend finds its running jobs there by name)."""
    ray_num_cpus: float | None = None
    """CPUs of a Ray instance started on demand; None: Ray's default (all of this machine's)."""
    ray_cpus_per_job: float = 1.0
    """CPUs each Ray job actor reserves (GPU jobs also reserve one GPU)."""
    max_loaded_models: int = 4
    """Size of the LRU cache of eval-mode models kept in memory for rollouts and attention."""
    api_token: str | None = Field(default=None, repr=False)
    """When set, every endpoint but `GET /api/health` wants `Authorization: Bearer <api_token>` (401 otherwise).
    None (or empty): no authentication, fit only for the default bind to 127.0.0.1."""

    @field_validator("runs_dir")
    @classmethod
    def _absolute_runs_dir(cls, value: Path) -> Path:
        # Resolve once, so job subprocesses and API responses agree whatever their working directory.
        return value.expanduser().resolve()

    @field_validator("api_token")
    @classmethod
    def _empty_token_is_none(cls, value: str | None) -> str | None:
        # `TWM_API_TOKEN=` (set but empty) must not turn on a token that an empty header would match.
        return value or None

    @field_validator("max_loaded_models")
    @classmethod
    def _at_least_one_model(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"max_loaded_models must be >= 1, got {value}")
        return value

    @field_validator("max_concurrent_jobs")
    @classmethod
    def _at_least_one_job(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError(f"max_concurrent_jobs must be >= 1 (or unset), got {value}")
        return value

    @field_validator("cancel_grace_seconds", "job_poll_seconds", "events_poll_interval")
    @classmethod
    def _positive_seconds(cls, value: float) -> float:
        if value <= 0:
            raise ValueError(f"must be > 0 seconds, got {value}")
        return value

    @field_validator("ray_num_cpus", "ray_cpus_per_job")
    @classmethod
    def _positive_cpus(cls, value: float | None) -> float | None:
        if value is not None and value <= 0:
            raise ValueError(f"must be > 0, got {value}")
        return value

    @model_validator(mode="after")
    def _default_db_path(self) -> Settings:
        if self.db_path is None:
            self.db_path = self.runs_dir / "jobs.db"
        return self

    @property
    def jobs_db(self) -> Path:
        """The SQLite file for job records (`db_path`, always set after validation)."""
        assert self.db_path is not None
        return self.db_path

    def resolved_device(self) -> str:
        """The concrete torch device string for `device` (`auto` → `cuda` when available, else `cpu`)."""
        if self.device != "auto":
            return self.device
        import torch  # lazy: settings are read by code paths that never touch a model

        return "cuda" if torch.cuda.is_available() else "cpu"
