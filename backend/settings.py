"""Backend settings, read from `TWM_*` environment variables (pydantic-settings).

There is no module-level instance: `create_app(settings)` receives one, so tests build their own
with a tmp runs dir.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
"""Host names a browser uses for this machine: always allowed in the `Host` header (see `allowed_hosts`)."""


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
    """Size of the LRU cache of eval-mode models kept in memory for rollouts and attention (loads in flight count)."""
    inspect_workers: int = 2
    """Threads that run model work (dream sessions, imagine, attention), apart from the request threads."""
    inspect_queue: int = 32
    """Model requests that may wait for a worker; beyond that the backend answers 503 with `Retry-After`."""
    inspect_threads: int = 1
    """Torch intra-op threads of the backend process. Inspection runs linears on one to three tokens, where a
    second thread costs more than it gives (measured: 3.4 ms with 2 threads and a busy neighbour, 0.15 ms with 1),
    so requests run in parallel on the workers, one thread each. Training jobs are separate processes."""
    max_evaluations: int = 1
    """Checkpoint evaluations (`POST .../checkpoints/{step}/evaluations`) run at once, each a `twm eval` process with
    one torch thread; one more is refused with 409 until one ends."""
    max_sessions: int = 64
    """Dream sessions kept at once; creating one more evicts the least recently used."""
    session_ttl_seconds: float = 1800.0
    """A dream session unused for this long is deleted."""
    api_token: str | None = Field(default=None, repr=False)
    """When set, every endpoint but `GET /api/health` wants `Authorization: Bearer <api_token>` (401 otherwise).
    None (or empty): no authentication, fit only for the default bind to 127.0.0.1."""
    allow_no_token: bool = False
    """`TWM_ALLOW_NO_TOKEN=1`: let `python -m backend` listen on a non-loopback address without `api_token`
    (anyone who reaches the port then controls the backend; meant for a private network you trust)."""
    allowed_hosts: Annotated[tuple[str, ...], NoDecode] = ()
    """Extra names accepted in the `Host` header, comma-separated (`TWM_ALLOWED_HOSTS=backend,gpu-box.lan`), on top
    of `LOOPBACK_HOSTS`; `*` accepts any. Why: a web page can rebind its own DNS name to 127.0.0.1 and then call the
    API from the victim's browser, but its requests still carry that page's name as `Host`, so they are refused."""
    max_body_bytes: int = 1024 * 1024
    """Largest request body accepted (`TWM_MAX_BODY_BYTES`, default 1 MiB); a larger one gets 413 before it is read
    whole. Our biggest legitimate body (a sweep over every game with overrides) is a few KiB."""

    max_job_steps: int | None = 1_000_000
    """Most env steps (`train.total_steps`) of a job submitted over HTTP (`TWM_MAX_JOB_STEPS`; the paper's 100k fits
    ten times). None: no cap. The CLI (`twm train`) is never capped."""
    max_replay_capacity: int | None = 1_000_000
    """Largest `replay.capacity` of a job submitted over HTTP (`TWM_MAX_REPLAY_CAPACITY`): ~4.1 GB of frames at the
    default 1M rows (the paper's 100k: ~410 MB). None: no cap."""
    max_model_params: int | None = 200_000_000
    """Most parameters of world model + actor-critic of an HTTP job (`TWM_MAX_MODEL_PARAMS`; the paper's model has
    21.7M). None: no cap."""
    job_memory_fraction: float | None = 0.8
    """Share of this machine's RAM (and, for a CUDA job, of the GPU's memory) that the estimated memory of an HTTP job
    may take (`TWM_JOB_MEMORY_FRACTION`, see `twm_core.resources.estimate_memory`); checked for the `local` executor
    only (a Ray job runs on another machine). None: not checked."""

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

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: Any) -> Any:
        # NoDecode: the environment gives a plain comma-separated string, not a JSON list.
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list | tuple):
            return tuple(normalize_host(str(host)) for host in value if str(host).strip())
        return value

    @field_validator("max_body_bytes")
    @classmethod
    def _positive_body_limit(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"max_body_bytes must be >= 1, got {value}")
        return value

    @field_validator("max_loaded_models", "inspect_workers", "inspect_threads", "max_sessions", "max_evaluations")
    @classmethod
    def _at_least_one(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"must be >= 1, got {value}")
        return value

    @field_validator("max_job_steps", "max_replay_capacity", "max_model_params")
    @classmethod
    def _positive_cap(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError(f"must be >= 1 (or unset for no cap), got {value}")
        return value

    @field_validator("job_memory_fraction")
    @classmethod
    def _memory_fraction(cls, value: float | None) -> float | None:
        if value is not None and not 0.0 < value <= 1.0:
            raise ValueError(f"job_memory_fraction must lie in (0, 1] (or unset), got {value}")
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

    @property
    def trusted_hosts(self) -> frozenset[str]:
        """Every name accepted in the `Host` header: `LOOPBACK_HOSTS` plus `allowed_hosts` (normalised)."""
        return frozenset(LOOPBACK_HOSTS) | frozenset(self.allowed_hosts)

    def resolved_device(self) -> str:
        """The concrete torch device string for `device` (`auto` → `cuda` when available, else `cpu`)."""
        if self.device != "auto":
            return self.device
        import torch  # lazy: settings are read by code paths that never touch a model

        return "cuda" if torch.cuda.is_available() else "cpu"


def normalize_host(host: str) -> str:
    """A host name as the `Host` check compares it: lowercase, no brackets around IPv6, no trailing dot."""
    host = host.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host.rstrip(".") if host != "." else host
