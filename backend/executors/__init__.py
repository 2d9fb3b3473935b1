"""Executors run training attempts for the job manager: `local` subprocesses (default) or Ray actors (`ray`).

Ray is an optional extra (`pip install .[ray]`) imported only when `TWM_EXECUTOR=ray` is chosen.
"""

from __future__ import annotations

from backend.executors.base import Attempt, Executor, ExecutorError, Launch, Outcome, Started
from backend.settings import Settings

EXECUTORS = ("local", "ray")


def make_executor(settings: Settings) -> Executor:
    """The executor named by `settings.executor`."""
    if settings.executor == "ray":
        from backend.executors.ray_executor import RayExecutor  # lazy: Ray is optional

        return RayExecutor(settings)
    from backend.executors.local import LocalExecutor

    return LocalExecutor(settings)


__all__ = ["EXECUTORS", "Attempt", "Executor", "ExecutorError", "Launch", "Outcome", "Started", "make_executor"]
