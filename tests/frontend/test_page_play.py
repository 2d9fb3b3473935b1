"""The Play page's speculative prefetch, through `AppTest` against a REAL backend serving a copy of `debug_run`.

After each step the page forks the session once per action; an action then adopts its fork. The points must be
those of a session stepped directly with the same actions (common random numbers), and no fork is left behind.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
from streamlit.testing.v1 import AppTest

READOUTS = ("step", "frame", "latent", "action", "reward", "discount", "done", "real", "errors")


def clean(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def live(url: str) -> set[str]:
    return {s["id"] for s in httpx.get(f"{url}/api/sessions", timeout=30).json()}


def gone(url: str, ids: set[str], timeout: float = 15.0) -> bool:
    """The page deletes sessions in the background: poll until none of `ids` is live."""
    deadline = time.monotonic() + timeout
    while ids & live(url):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def readouts(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: p[k] for k in READOUTS} for p in points]


def test_an_action_adopts_its_prefetched_fork_exactly(page_app: Callable[[str], AppTest], dashboard_env: str,
                                                      debug_run_id: str) -> None:
    at = clean(page_app("app_pages/play.py").run())
    clean(at.button(key="play_reset").click().run())
    game = at.session_state["play_game"]
    actions = len(game["meanings"])
    forks = game["candidates"]["forks"]
    assert game["candidates"]["key"] == f"{game['session']}:0" and sorted(forks) == list(range(actions))
    assert live(dashboard_env) >= {game["session"], *(f["session"] for f in forks.values())}

    taken = []
    for action in (1, 0, actions - 1):
        chosen = at.session_state["play_game"]["candidates"]["forks"][action]
        clean(at.button(key=f"play_action_{action}").click().run())
        game = at.session_state["play_game"]
        taken.append(action)
        assert game["session"] == chosen["session"] and game["points"][-1] == chosen["point"]
    clean(at.button(key="play_policy").click().run())  # the policy's step: the plain path
    game = at.session_state["play_game"]
    assert len(game["points"]) == 5 and game["candidates"]["key"] == f"{game['session']}:4"
    taken.append(game["points"][-1]["action"])
    assert {game["session"], *(f["session"] for f in game["candidates"]["forks"].values())} <= live(dashboard_env)
    assert gone(dashboard_env, {f["session"] for f in forks.values()}), "the first step's forks were left behind"

    direct = httpx.post(f"{dashboard_env}/api/sessions", timeout=120, json={
        "run_id": debug_run_id, "checkpoint": "latest", "seed": 0, "real": True,
        "start": {"kind": "reset", "policy_steps": 0}, "actions": taken}).json()
    httpx.delete(f"{dashboard_env}/api/sessions/{direct['id']}", timeout=30)
    assert readouts(game["points"]) == readouts(direct["points"])
    backend = httpx.get(f"{dashboard_env}/api/sessions/{game['session']}", timeout=30).json()
    assert readouts(backend["points"]) == readouts(direct["points"])

    clean(at.button(key="play_undo").click().run())  # undo: a fork one step back, the old session goes
    game = at.session_state["play_game"]
    assert readouts(game["points"]) == readouts(direct["points"][:4])
    assert gone(dashboard_env, {backend["id"]})
