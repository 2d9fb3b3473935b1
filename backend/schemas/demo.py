"""Bodies of `GET /api/demo` and `POST /api/demo`: the shipped demo run (a learned Catch model) and its facts.

Mirrors `twm_core/data/demo/manifest.json` (written by `twm_core.demo.build`).
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class DemoFacts(BaseModel):
    """How the shipped demo was made and how well it plays."""

    game: str
    preset: str
    seed: int
    steps: int = Field(description="env steps it was trained for")
    checkpoint_step: int
    final_score: float = Field(description="mean return over the final evaluation episodes")
    final_episodes: int
    max_score: float = Field(description="the best possible return (every ball caught)")
    random_policy_score: float = Field(description="mean return of a uniformly random policy")
    build_minutes: float = Field(description="wall-clock minutes `make demo` took to train and pack it")
    torch_version: str
    config_sha256: str


class DemoStatus(BaseModel):
    """Whether the demo can be installed (`available`) and whether it is (`installed`), with its facts."""

    run_id: str
    available: bool = Field(description="the backend ships an intact demo")
    installed: bool = Field(description="the runs directory holds the demo run")
    installed_now: bool = Field(False, description="POST only: this request copied it in")
    facts: DemoFacts | None = None
    links: dict[str, str] = Field(default_factory=dict,
                                  description="dashboard paths opening the demo on imagine, attention and play")
    problem: str | None = Field(None, description="why the demo is not available")
