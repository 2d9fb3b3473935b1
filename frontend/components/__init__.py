"""Small in-page components (Streamlit custom components v2): HTML/JS/CSS shipped in this package, no CDN.

`dream_viewer(data, key)` mounts the dream viewer (`dream_viewer.js`): every frame of a dream and its branches is
sent to the page once, and scrubbing, playing and the keyboard run there without a request. It returns the action
the user asked for (fork, latent edit, futures, attention), or None.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import streamlit as st

HERE = Path(__file__).parent


@cache
def _dream_viewer() -> Any:
    return st.components.v2.component(
        "twm_dream_viewer", html='<div class="dv-host"></div>',
        css=(HERE / "dream_viewer.css").read_text(), js=(HERE / "dream_viewer.js").read_text())


def dream_viewer(data: dict[str, Any], key: str) -> dict[str, Any] | None:
    """Mount the viewer; the trigger value of this run (a dict with `kind`, `track`, `id`, `step`, ...) or None."""
    result = _dream_viewer()(data=data, key=key, on_action_change=lambda: None)
    action = getattr(result, "action", None)
    return action if isinstance(action, dict) else None


@cache
def _play_keys() -> Any:
    return st.components.v2.component(
        "twm_play_keys", html='<div class="pk-host"></div>',
        css=(HERE / "play_keys.css").read_text(), js=(HERE / "play_keys.js").read_text())


def play_keys(data: dict[str, Any], key: str, on_key: Any) -> None:
    """Mount the play keys; `on_key()` runs (before the rerun) when a key was pressed or the driver toggled: read
    `st.session_state[key].key` for `{"key": "<action index>" | "policy" | "undo" | "drive:policy" | "drive:human"}`.
    While `data["driver"]` is "policy", the component sends "policy" itself, one step after each new `data["turn"]`."""
    _play_keys()(data=data, key=key, on_key_change=on_key)


KEY_NAMES = {"NOOP": "n", "FIRE": " ", "UP": "ArrowUp", "RIGHT": "ArrowRight", "LEFT": "ArrowLeft",
             "DOWN": "ArrowDown"}


def keymap(meanings: list[str]) -> dict[str, int]:
    """Keyboard keys of a game's actions: arrows and space for the plain ALE meanings, digits for every index."""
    keys = {str(i): i for i in range(min(len(meanings), 10))}
    for i, meaning in enumerate(meanings):
        if meaning in KEY_NAMES:
            keys[KEY_NAMES[meaning]] = i
    return keys
