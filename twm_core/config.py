"""Typed, frozen configuration of a run: `TWMConfig`, one section of each kind (`twm_core.config_sections`).

The defaults ARE the paper's method as the authors ran it: each default of a method field cites the line of
`jrobine/twm/twm/config.py` (through `shared/reference/method.md`, "§2.x") it reproduces, and this is the only
place those numbers live. `presets.atari100k()` is the defaults; `debug()` and `catch()` change sizes and schedules.
tests/core/test_config.py checks the defaults against method.md value by value.

One mechanism reads configs from anywhere: `TWMConfig.from_dict` (files, checkpoints, HTTP) and
`TWMConfig.with_overrides` (dotted keys from the CLI, `bench`, the backend's job requests) both validate through
pydantic (a `TypeAdapter` over these dataclasses: types, unknown keys, lax coercion of strings such as `"3"`,
`"false"`, `"inf"` or `"512,512"`), and then each section's own `__post_init__` checks ranges. Every error is a
`ConfigError` naming the field (`dyn.num_heads must be > 0, got -1`, `unknown config key: dyn.nope`).
`twm_core.config_parsing` holds that mechanism, the one `KEY=VALUE` grammar (`parse_assignments`: `twm --set`,
`twm sweep --set`, `bench --set`, the dashboard's override form) and the JSON schema; `twm_core.presets` the
presets (`atari100k`, `debug`, `catch`) and `make_config`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from twm_core.config_sections import (
    _PARSE,
    ActorCriticConfig,
    ConfigError,
    Dims,
    DynamicsConfig,
    EnvConfig,
    ObsModelConfig,
    ReplayConfig,
    TrainConfig,
    _check,
)

__all__ = ["ActorCriticConfig", "ConfigError", "Dims", "DynamicsConfig", "EnvConfig", "ObsModelConfig",
           "ReplayConfig", "TWMConfig", "TrainConfig"]


@dataclass(frozen=True)
class TWMConfig:
    """Everything a run needs; saved as `run_dir/config.json`."""

    __pydantic_config__ = _PARSE

    env: EnvConfig = field(default_factory=EnvConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    obs: ObsModelConfig = field(default_factory=ObsModelConfig)
    dyn: DynamicsConfig = field(default_factory=DynamicsConfig)
    ac: ActorCriticConfig = field(default_factory=ActorCriticConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    preset: str = "atari100k"
    """Name of the preset this config was built from (informational)."""
    seed: int = 0
    deterministic: bool = False
    """Deterministic kernels (and cudnn.benchmark off); recorded for reproducibility."""

    def __post_init__(self) -> None:
        _check(self.replay.capacity >= self.train.total_steps, "replay.capacity", "must be >= train.total_steps",
               self.replay.capacity)
        _check(self.replay.prefill < self.train.total_steps, "replay.prefill", "must be < train.total_steps",
               self.replay.prefill)
        _check(self.dyn.memory_length >= 1, "dyn.memory_length", "must be >= 1", self.dyn.memory_length)
        _check(self.seed >= 0, "seed", "must be >= 0", self.seed)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists, inf becomes the string 'inf')."""
        from twm_core.config_parsing import to_plain

        return to_plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: Any) -> TWMConfig:
        """Inverse of `to_dict`, and the reader of every config file and request: validated by pydantic, then by
        the sections' own checks; any problem is a `ConfigError` naming the field. Missing fields take defaults."""
        from twm_core.config_parsing import adapter, config_error, excerpt

        if not isinstance(data, dict):
            raise ConfigError(f"a config must be a mapping, got {excerpt(data)}")
        try:
            return adapter().validate_python(data)
        except ValidationError as e:
            raise config_error(e) from None

    def with_overrides(self, overrides: dict[str, Any]) -> TWMConfig:
        """A copy with dotted keys replaced, e.g. `{"dyn.num_layers": 2, "seed": 3}`; values may be strings
        (`"3"`, `"false"`, `"inf"`, `"512,512"`), read as the field's type."""
        data = self.to_dict()
        for key, value in overrides.items():
            *path, name = key.split(".")
            target = data
            for part in path:
                if not isinstance(target.get(part), dict):
                    raise ConfigError(f"unknown config key: {key}")
                target = target[part]
            if name not in target:
                raise ConfigError(f"unknown config key: {key}")
            target[name] = value
        return TWMConfig.from_dict(data)

