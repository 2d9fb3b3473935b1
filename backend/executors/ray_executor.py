"""The `ray` executor: each attempt is a detached, named Ray actor (`TrainProcess`) that runs `twm train` on its node.

Why an actor around a process rather than a Ray task calling the trainer: the trainer's cancel protocol is a signal
(SIGTERM: checkpoint, then exit; SIGKILL after the grace period), its log and files go to the run directory, and a
detached named actor can be found again by a backend that restarted. The actor asks for `ray_cpus_per_job` CPUs and
one GPU when the job runs on CUDA; Ray decides the node and the GPU.

Cluster: `ray_address` when set; otherwise a Ray instance already running on this machine, or one started on demand
with `ray start --head` (it outlives the backend, like local jobs do; `ray stop` ends it). Ray 2.5x wants an auth
token for clusters unless `RAY_AUTH_MODE=disabled`: set here (unless the environment says otherwise), fit for a
cluster on a private network.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from backend.executors.base import Attempt, ExecutorError, Launch, Outcome, Started
from backend.executors.local import check_device_name
from backend.executors.ray_worker import TrainProcess
from backend.settings import Settings

logger = logging.getLogger(__name__)

_KILL_WAIT_S = 10.0


class RayExecutor:
    """Attempts as Ray actors on the cluster named by the settings (connected on first use)."""

    kind = "ray"

    def __init__(self, settings: Settings) -> None:
        try:
            import ray  # noqa: F401  (checked here, so a missing extra is a clear error at startup)
        except ImportError as e:
            raise ExecutorError("TWM_EXECUTOR=ray needs Ray: pip install '.[ray]'") from e
        self.settings = settings
        self.namespace = settings.ray_namespace
        self._remote: Any = None  # ray.remote(TrainProcess), made once connected
        self._actors: dict[str, Any] = {}  # handle → actor handle
        self._polls: dict[str, Any] = {}  # handle → the outstanding ObjectRef of actor.poll()

    # ------------------------------------------------------------------------------------------ cluster
    def _ray(self) -> Any:
        import ray

        if not ray.is_initialized():
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")
            address = self.settings.ray_address
            if address:
                try:
                    self._init(ray, address)
                except ConnectionError as e:
                    raise ExecutorError(f"cannot connect to the Ray cluster at {address!r}: {e}") from e
            else:
                try:
                    self._init(ray, "auto")  # a Ray instance already running on this machine
                except ConnectionError:
                    self._start_local_head()
                    self._init(ray, "auto")
        if self._remote is None:
            self._remote = ray.remote(TrainProcess)
        return ray

    def _init(self, ray: Any, address: str) -> None:
        try:
            ray.init(address=address, namespace=self.namespace, log_to_driver=False, logging_level=logging.WARNING)
        except ConnectionError:
            raise
        except Exception as e:  # Ray raises assorted types for an unreachable or mismatched cluster
            raise ExecutorError(f"cannot connect to the Ray cluster at {address!r}: {e}") from e
        logger.info("connected to Ray at %s", ray.get_runtime_context().gcs_address)

    def _start_local_head(self) -> None:
        ray_cli = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
        if ray_cli is None:
            raise ExecutorError("no `ray` command next to this Python: pip install '.[ray]'")
        command = [ray_cli, "start", "--head", "--include-dashboard=false", "--disable-usage-stats"]
        if self.settings.ray_num_cpus is not None:
            command.append(f"--num-cpus={self.settings.ray_num_cpus:g}")
        logger.info("starting a local Ray instance: %s", " ".join(command))
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "RAY_AUTH_MODE":
                              os.environ.get("RAY_AUTH_MODE", "disabled")}, check=False)
        if done.returncode != 0:
            raise ExecutorError(f"`ray start --head` failed ({done.returncode}): {done.stderr[-2000:]}")

    def _resources(self) -> dict[str, float]:
        return dict(self._ray().cluster_resources())

    # ------------------------------------------------------------------------------------------ Executor
    def gpu_count(self) -> int:
        return int(self._resources().get("GPU", 0))

    def capacity(self) -> int:
        resources = self._resources()
        if resources.get("GPU", 0) >= 1:
            return int(resources["GPU"])
        return max(1, int(resources.get("CPU", 1) // self.settings.ray_cpus_per_job))

    def check_device(self, device: str) -> None:
        check_device_name(device)
        if device.startswith("cuda:"):
            raise ValueError(f"device {device!r}: on Ray the cluster picks the GPU; ask for 'cuda' or 'auto'")
        if device == "cuda" and self.gpu_count() == 0:
            raise ValueError("device 'cuda': the Ray cluster has no GPU")

    def start(self, launch: Launch) -> Started:
        self._ray()  # connected, and the actor class made remote
        gpu = launch.device == "cuda" or (launch.device == "auto" and self.gpu_count() > 0)
        device = "cuda" if gpu else "cpu"
        handle = f"twm-{launch.job_id}-a{launch.attempt}"
        try:
            actor = self._remote.options(
                name=handle, namespace=self.namespace, lifetime="detached", max_restarts=0,
                num_cpus=self.settings.ray_cpus_per_job, num_gpus=1 if gpu else 0,
            ).remote()
            # Fire and forget: the actor may wait for resources; `poll` sees it run once it starts.
            actor.start.remote([*launch.args, "--device", device], str(launch.log_path),
                               {"PYTHONUNBUFFERED": "1", **launch.env})
        except Exception as e:
            raise ExecutorError(f"Ray could not create actor {handle}: {e}") from e
        self._actors[handle] = actor
        self._polls.pop(handle, None)
        return Started(handle=handle, pid=None, device=device)

    def poll(self, attempt: Attempt) -> Outcome:
        ray = self._ray()
        actor = self._actor(attempt.handle)
        if actor is None:  # the actor is gone (killed, its node died, the cluster restarted)
            return Outcome(running=False, exit_code=None, pid=attempt.pid)
        ref = self._polls.get(attempt.handle)
        if ref is None:
            self._polls[attempt.handle] = actor.poll.remote()
            return Outcome(running=True, pid=attempt.pid)
        ready, _ = ray.wait([ref], timeout=0)
        if not ready:  # still pending for resources, or busy: ask again next tick
            return Outcome(running=True, pid=attempt.pid)
        del self._polls[attempt.handle]
        try:
            pid, code = ray.get(ref)
        except ray.exceptions.RayError:  # the actor died under it
            return Outcome(running=False, exit_code=None, pid=attempt.pid)
        if code is None:
            self._polls[attempt.handle] = actor.poll.remote()
            return Outcome(running=True, pid=pid)
        return Outcome(running=False, exit_code=code, pid=pid)

    def signal(self, attempt: Attempt, sig: signal.Signals) -> None:
        ray = self._ray()
        actor = self._actor(attempt.handle)
        if actor is None:
            return
        ref = actor.signal.remote(int(sig))
        if sig == signal.SIGKILL:
            # Make sure the process group got it before the actor goes: its children would outlive the worker.
            ready, _ = ray.wait([ref], timeout=_KILL_WAIT_S)
            if not ready:
                logger.warning("actor %s did not take SIGKILL in %.0f s (still waiting for resources?): killing it",
                               attempt.handle, _KILL_WAIT_S)
            ray.kill(actor, no_restart=True)

    def release(self, attempt: Attempt) -> None:
        self._polls.pop(attempt.handle, None)
        actor = self._actor(attempt.handle)
        self._actors.pop(attempt.handle, None)
        if actor is not None:
            self._ray().kill(actor, no_restart=True)

    def describe(self) -> dict[str, Any]:
        ray = self._ray()
        resources = self._resources()
        return {"kind": self.kind, "address": ray.get_runtime_context().gcs_address, "namespace": self.namespace,
                "cpus": resources.get("CPU", 0.0), "gpus": resources.get("GPU", 0.0),
                "cpus_per_job": self.settings.ray_cpus_per_job}

    def _actor(self, handle: str) -> Any:
        ray = self._ray()
        if handle in self._actors:
            return self._actors[handle]
        try:
            actor = ray.get_actor(handle, namespace=self.namespace)
        except ValueError:
            return None
        self._actors[handle] = actor
        return actor
