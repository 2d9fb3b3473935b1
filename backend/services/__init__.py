"""Model work behind the inspect endpoints (no FastAPI here): imagined rollouts and attention maps.

This package module stays free of torch, so the HTTP layer can import the request-level types cheaply; the
`rollouts` and `attention` modules load the models' code.
"""

from __future__ import annotations

from dataclasses import dataclass


class InvalidRequest(ValueError):
    """The request cannot be served as asked (an action out of range, a replay index past the buffer, ...).

    The message is meant for the caller; the HTTP layer answers 422 with it.
    """


@dataclass(frozen=True)
class ResetStart:
    """A real env reset (evaluation env, seeded by the request) followed by `policy_steps` policy steps."""

    policy_steps: int = 0


@dataclass(frozen=True)
class ReplayStart:
    """Row `index` of the run's replay buffer, as of the checkpoint."""

    index: int


StartSpec = ResetStart | ReplayStart
