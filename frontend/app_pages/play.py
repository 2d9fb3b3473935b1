"""Play: act inside the world model from a real start (the authors' dream mode), on a backend dream session.

"Reset" starts a session (`POST /api/sessions`). Then the keyboard drives it: the arrows and space (FIRE) for the
game's actions, digits for any action index, `p` for one step of the policy, Backspace to undo (a fork one step
back). Each key is one O(1) step and reruns only the play fragment; the buttons do the same.

Speculative prefetch (exact): while the human plays, after each step the page forks the session at the current step
once per action (`.../fork` with that action: the point `step(action)` would give, the same random numbers) and
hands those candidate frames to the component, which draws the chosen one at the key press, without a round trip.
The page then adopts that fork as the session (its points are the session's plus the new one) and deletes the
others and the old session (in the background); a key pressed before the candidates are in takes the plain path
(one `.../step`).

The component's Human | Policy toggle (or `P`) hands the game to the policy, which keeps stepping (the plain path)
until switched back; an action key or Backspace takes over. The real emulator plays the same actions beside the dream
while its episode lasts; there is no step limit. A session is deterministic: the same seed and keys give the same
frames.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import streamlit as st

from frontend import inspect_views as views
from frontend.api_client import BackendClient, BackendError, get_client
from frontend.components import keymap, play_keys
from frontend.widgets import checkpoint_picker, run_picker, runs_or_stop

# {"run_id", "checkpoint", "seed", "session": id, "meanings", "points", "checkpoint_step", "error",
#  "driver": "human" | "policy", "turn": commands handled so far,
#  "candidates": {"key": "<session>:<step>", "forks": {action: {"session": fork id, "point": its new point}}} | None}
GAME = "play_game"
KEYS = "play_keys"

st.title("Play")
st.caption("Play inside the world model: start from a real frame, then act with the keyboard (arrows, space = FIRE, "
           "digits = action index, p = one policy step, Backspace = undo) or the buttons; **Policy** (or P) lets the "
           "policy play until you switch back or press a key. The world model imagines the next frame, the reward r̂ "
           "and the discount γ̂; the real game plays the same actions beside it.")

client = get_client()
runs = runs_or_stop(client)

col_run, col_ckpt, col_seed, col_k = st.columns([2, 1, 1, 1])
run_id = run_picker([r["run_id"] for r in runs], col_run, "play_run")
checkpoint = checkpoint_picker(client, run_id, col_ckpt, "play_checkpoint")
seed = col_seed.number_input("Seed", min_value=0, max_value=2**31 - 1, value=0, step=1, key="play_seed")
policy_steps = col_k.number_input("Policy steps before", min_value=0, max_value=2000, value=0, step=1,
                                  key="play_k")


def reset(client: BackendClient) -> None:
    """A new session at the real start of the chosen run, checkpoint and seed."""
    body = {"run_id": run_id, "checkpoint": checkpoint, "seed": int(seed), "real": True,
            "start": views.start_body("reset", int(policy_steps))}
    session = client.create_session(body)
    old = st.session_state.get(GAME)
    if old is not None:
        drop_candidates(client, old)
        forget(client, old["session"])
    st.session_state[GAME] = {"run_id": run_id, "checkpoint": checkpoint, "seed": int(seed), "session": session["id"],
                              "meanings": session["action_meanings"], "points": session["points"],
                              "checkpoint_step": session["checkpoint_step"], "error": None, "driver": "human",
                              "turn": 0, "candidates": None}


@st.cache_resource
def background() -> ThreadPoolExecutor:
    """Threads for the prefetch's forks (sent at once) and the deletes (not waited for)."""
    return ThreadPoolExecutor(max_workers=4, thread_name_prefix="play")


def _delete(client: BackendClient, session_id: str) -> None:
    try:
        client.delete_session(session_id)
    except BackendError:
        pass  # gone already, or the backend away: nothing to do


def forget(client: BackendClient, session_id: str) -> None:
    """Delete a session the page no longer needs, in the background."""
    background().submit(_delete, client, session_id)


def candidates_key(game: dict[str, Any]) -> str:
    return f"{game['session']}:{len(game['points']) - 1}"


def drop_candidates(client: BackendClient, game: dict[str, Any], keep: str | None = None) -> None:
    """Delete the prefetched forks (all but `keep`)."""
    for fork in (game.get("candidates") or {}).get("forks", {}).values():
        if fork["session"] != keep:
            forget(client, fork["session"])
    game["candidates"] = None


def prefetch(client: BackendClient, game: dict[str, Any]) -> None:
    """The next point under every action: one fork per action at the current step (the point `step(action)` would
    give there). A failure leaves no candidates: the keys take the plain path."""
    if (game.get("candidates") or {}).get("key") == candidates_key(game):
        return
    drop_candidates(client, game)
    n, forks, failed = len(game["points"]) - 1, {}, False
    asked = [background().submit(client.fork_session, game["session"], {"step": n, "action": a, "since": n + 1})
             for a in range(len(game["meanings"]))]
    for action, reply in enumerate(asked):
        try:
            fork = reply.result()
        except BackendError:
            failed = True
            continue
        forks[action] = {"session": fork["id"], "point": fork["points"][-1]}
    if failed:
        for fork in forks.values():
            forget(client, fork["session"])
        return
    game["candidates"] = {"key": candidates_key(game), "forks": forks}


def act(client: BackendClient, game: dict[str, Any], action: int | None) -> None:
    """One step (the given action, or the policy's when None); keep it only if the backend answers. A prefetched
    fork of that action becomes the session (the same point, no model work); the session it forked from goes."""
    candidates = game.get("candidates") or {}
    fork = candidates.get("forks", {}).get(action) if candidates.get("key") == candidates_key(game) else None
    if fork is not None:
        old = game["session"]
        drop_candidates(client, game, keep=fork["session"])
        game.update(session=fork["session"], points=game["points"] + [fork["point"]])
        forget(client, old)
        return
    drop_candidates(client, game)
    reply = client.step_session(game["session"]) if action is None else \
        client.step_session(game["session"], actions=[action])
    game["points"] = game["points"][: reply["since"]] + reply["points"]


def undo(client: BackendClient, game: dict[str, Any]) -> None:
    """Go back one step: a fork of the session at the previous point."""
    if len(game["points"]) < 2:
        return
    fork = client.fork_session(game["session"], {"step": len(game["points"]) - 2})
    drop_candidates(client, game)
    forget(client, game["session"])
    game.update(session=fork["id"], points=fork["points"])


def handle(command: str) -> None:
    """A key or button: an action index, "policy" (one policy step), "undo", or who acts ("drive:policy",
    "drive:human"). An action or undo takes the game back from the policy. Errors are shown, the dream stays as it
    was, and the human acts again."""
    game = st.session_state[GAME]
    game["turn"] = game.get("turn", 0) + 1  # the component waits for a new turn before its next policy step
    if command.startswith("drive:"):
        game["driver"] = "policy" if command == "drive:policy" else "human"
        return
    if command != "policy":
        game["driver"] = "human"
    try:
        if command == "undo":
            undo(client, game)
        else:
            act(client, game, None if command == "policy" else int(command))
        game["error"] = None
    except BackendError as exc:
        game["driver"] = "human"
        game["error"] = exc.message + (" — the session expired: press Reset." if exc.status_code == 404 else "")


def on_key() -> None:
    pressed = getattr(st.session_state.get(KEYS), "key", None)
    if isinstance(pressed, dict) and GAME in st.session_state:
        handle(str(pressed.get("key")))


try:
    if st.button("Reset", type="primary", key="play_reset"):
        reset(client)
except BackendError as exc:
    st.error(exc.message)

game = st.session_state.get(GAME)
if game is None:
    st.info("Press **Reset** to start from a real frame.")
    st.stop()
if (game["run_id"], game.get("checkpoint")) != (run_id, checkpoint):  # only the picker's run is shown
    shown = views.checkpoint_name(game["checkpoint"]) if "checkpoint" in game else f"step {game['checkpoint_step']}"
    st.info(f"The last dream was of `{game['run_id']}` ({shown}): press **Reset** to play `{run_id}` "
            f"({views.checkpoint_name(checkpoint)}).")
    st.stop()


def real_frame(point: dict[str, Any]) -> str | None:
    return None if point["real"] is None else point["real"]["frame"]


def caption(point: dict[str, Any], n: int, meanings: list[str], driver: str) -> str:
    text = f"step {n}"
    if n:
        text += f" · {meanings[point['action']]} · r̂ {point['reward']:+.3f} · γ̂ {point['discount']:.3f}"
    if point["real"] is None:
        text += " · the real episode has ended; the dream goes on"
    elif point["errors"] is not None and n:
        text += f" · pixel error vs real {point['errors']['pixel']:.3f}"
    if driver == "policy":
        text += " · the policy plays"
    return text


def candidates_data(game: dict[str, Any]) -> dict[str, Any] | None:
    """What the component draws at once on an action key: per action the next frame, real frame and caption."""
    candidates = game.get("candidates")
    if candidates is None or candidates["key"] != candidates_key(game):
        return None
    n, meanings = len(game["points"]), game["meanings"]
    return {"key": candidates["key"], "step": n - 1,
            "frames": [[a, f["point"]["frame"], real_frame(f["point"]), caption(f["point"], n, meanings, "human")]
                       for a, f in sorted(candidates["forks"].items())]}


@st.fragment
def play_area() -> None:
    game = st.session_state[GAME]
    meanings = game["meanings"]
    buttons = st.columns(len(meanings) + 2)
    for i, (col, name) in enumerate(zip(buttons, meanings, strict=False)):
        col.button(name, key=f"play_action_{i}", width="stretch", on_click=handle, args=(str(i),))
    buttons[-2].button("Policy step", key="play_policy", width="stretch", on_click=handle, args=("policy",))
    buttons[-1].button("Undo", key="play_undo", width="stretch", disabled=len(game["points"]) < 2,
                       on_click=handle, args=("undo",))
    if game["error"]:
        st.error(game["error"])
    points = game["points"]
    n = len(points) - 1
    point, moves = points[-1], points[1:]
    driver = game.get("driver", "human")
    if driver == "human":
        prefetch(client, game)
    else:
        drop_candidates(client, game)  # the policy plays on the plain path
    keys = keymap(meanings)
    play_keys({"version": candidates_key(game), "session": game["session"], "step": n, "frame": point["frame"],
               "real": real_frame(point), "caption": caption(point, n, meanings, driver),
               "keymap": sorted(keys.items()), "driver": driver, "turn": game.get("turn", 0),
               "candidates": candidates_data(game)}, key=KEYS, on_key=on_key)
    cols = st.columns(4)
    cols[0].metric("Step", n)
    cols[1].metric("r̂", f"{point['reward']:+.3f}" if n else "—")
    cols[2].metric("γ̂", f"{point['discount']:.3f}" if n else "—")
    cols[3].metric("Imagined return", f"{sum(p['reward'] for p in moves):+.3f}")
    if point["done"]:
        st.warning("The world model predicts the episode ended here (γ̂ low); imagination restarted from a replay "
                   "frame.")
    if n:
        st.caption("Actions so far: " + ", ".join(meanings[p["action"]] for p in moves[-30:]))
    names = {k if k != " " else "space": meanings[a] for k, a in keys.items() if not k.isdigit()}
    st.caption("Keys: " + ", ".join(f"{k} → {v}" for k, v in names.items()) + "; digits → action index; "
               "p → one policy step; P → the policy plays / you play; Backspace → undo")
    export = {"run_id": game["run_id"], "checkpoint_step": game["checkpoint_step"], "seed": game["seed"],
              "actions": [p["action"] for p in moves], "rewards": [p["reward"] for p in moves],
              "discounts": [p["discount"] for p in moves]}
    st.download_button("Export (JSON)", json.dumps(export), file_name="dream.json", mime="application/json",
                       key="play_export")


st.subheader(f"{st.session_state[GAME]['run_id']} · checkpoint step {st.session_state[GAME]['checkpoint_step']} · "
             f"seed {st.session_state[GAME]['seed']}")
play_area()
