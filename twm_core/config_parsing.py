"""Reading configs: the pydantic mechanism behind `TWMConfig.from_dict` / `with_overrides`, the one `KEY=VALUE`
grammar of every command line, and the config's JSON schema.

pydantic validates types and unknown keys over the config dataclasses (a `TypeAdapter`, lax: `"3"`, `"false"`,
`"inf"`, `"512,512"` read as the field's type), then each section's `__post_init__` checks ranges; every problem
becomes one `ConfigError` naming the field.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from functools import cache
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter, ValidationError

from twm_core.config import ConfigError

if TYPE_CHECKING:
    from twm_core.config import TWMConfig


def to_plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return value


@cache
def adapter() -> TypeAdapter[TWMConfig]:
    from twm_core.config import TWMConfig

    return TypeAdapter(TWMConfig)


def excerpt(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}..."


def config_error(error: ValidationError) -> ConfigError:
    """pydantic's errors as one `ConfigError`, each naming its field (`dyn.num_layers`)."""
    messages = []
    for item in error.errors():
        name = ".".join(str(part) for part in item["loc"])
        if item["type"] == "value_error":  # a section's own check: its message names the field already
            messages.append(str(item.get("ctx", {}).get("error", item["msg"])))
        elif item["type"] in ("unexpected_keyword_argument", "extra_forbidden"):
            messages.append(f"unknown config key: {name}")
        else:
            messages.append(f"{name} has the wrong type: {excerpt(item.get('input'))} ({item['msg']})")
    return ConfigError("; ".join(messages))


def parse_assignments(pairs: Iterable[str]) -> dict[str, Any]:
    """The one `KEY=VALUE` grammar of every command line (`twm ... --set`, `bench --set`): VALUE is JSON when it
    parses as JSON (`3`, `1e5`, `false`, `[512, 512]`, `"Pong"`), else the plain string (`Pong`, `inf`, `512,512`);
    `TWMConfig.with_overrides` then reads it as the field's type."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {pair!r}")
        try:
            out[key.strip()] = json.loads(text)
        except json.JSONDecodeError:
            out[key.strip()] = text.strip()
    return out


def config_schema() -> dict[str, Any]:
    """JSON schema of `TWMConfig` (types, defaults: the paper's values, each field's docstring as description)."""
    return adapter().json_schema()
