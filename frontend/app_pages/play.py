"""Play: act inside the world model, one imagined step per button press, from a real start (the authors' dream mode).

Each press sends the whole action history to `/imagine` (horizon = its length) with the same seed, so the dream is
deterministic: the same presses give the same frames. "Reset" goes back to the real start.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from frontend import inspect_views as views
from frontend.api_client import BackendError, get_client
from frontend.widgets import checkpoint_picker, runs_or_stop

GAME = "play_game"  # {"run_id", "checkpoint", "seed", "policy_steps", "meanings", "start_frame", "actions", "rollout"}

st.title("Play")
st.caption("Play inside the world model: start from a real frame, then pick each action; the world model imagines "
           "the next frame, the reward r̂ and the discount γ̂.")

client = get_client()
runs = runs_or_stop(client)

col_run, col_ckpt, col_seed, col_k = st.columns([2, 1, 1, 1])
run_id = col_run.selectbox("Run", [r["run_id"] for r in runs], key="play_run")
checkpoint = checkpoint_picker(client, run_id, col_ckpt, "play_checkpoint")
seed = col_seed.number_input("Seed", min_value=0, max_value=2**31 - 1, value=0, step=1, key="play_seed")
policy_steps = col_k.number_input("Policy steps before", min_value=0, max_value=2000, value=0, step=1,
                                  key="play_k")


def _body(game: dict[str, Any], actions: list[int]) -> dict[str, Any]:
    return {"checkpoint": game["checkpoint"], "seed": game["seed"], "horizon": len(actions), "actions": actions,
            "start": views.start_body("reset", game["policy_steps"])}


def reset() -> None:
    """Go to the real start of the chosen run/checkpoint/seed (one tiny request for the frame and action set)."""
    game = {"run_id": run_id, "checkpoint": checkpoint, "seed": int(seed), "policy_steps": int(policy_steps),
            "actions": [], "rollout": None}
    probe = client.imagine(run_id, _body(game, [0]))
    game.update(meanings=probe["action_meanings"], start_frame=probe["start_frame"],
                checkpoint_step=probe["checkpoint_step"])
    st.session_state[GAME] = game


def act(action: int) -> None:
    """Imagine the whole history plus `action`; keep it only if the backend answers."""
    game = st.session_state[GAME]
    actions = [*game["actions"], action]
    rollout = client.imagine(game["run_id"], _body(game, actions))
    game.update(actions=actions, rollout=rollout)


try:
    if st.button("Reset", type="primary", key="play_reset"):
        reset()
except BackendError as exc:
    st.error(exc.message)

game = st.session_state.get(GAME)
if game is None:
    st.info("Press **Reset** to start from a real frame.")
    st.stop()

st.subheader(f"{game['run_id']} · checkpoint step {game['checkpoint_step']} · seed {game['seed']}")
full = len(game["actions"]) >= views.MAX_HORIZON
buttons = st.columns(len(game["meanings"]))
for i, (col, name) in enumerate(zip(buttons, game["meanings"], strict=True)):
    if col.button(name, key=f"play_action_{i}", disabled=full, width="stretch"):
        try:
            act(i)
        except BackendError as exc:
            st.error(exc.message)
if full:
    st.warning(f"The dream is {views.MAX_HORIZON} steps long, the most one request imagines: press Reset.")

rollout = game["rollout"]
n = len(game["actions"])
frame_col, info_col = st.columns([1, 2])
with frame_col:
    frame = rollout["frames"][-1] if rollout else game["start_frame"]
    st.image(views.upscale(views.decode_png(frame)), width=320)
    st.markdown(views.step_annotation(rollout, n) if rollout else "the real start frame")
with info_col:
    cols = st.columns(4)
    cols[0].metric("Step", n)
    cols[1].metric("r̂", f"{rollout['rewards'][-1]:+.3f}" if rollout else "—")
    cols[2].metric("γ̂", f"{rollout['discounts'][-1]:.3f}" if rollout else "—")
    cols[3].metric("Imagined return", f"{sum(rollout['rewards']):+.3f}" if rollout else "0")
    if rollout and rollout["dones"][-1]:
        st.warning("The world model predicts the episode ended here (γ̂ low); imagination restarted from a replay "
                   "frame.")
    if n:
        st.caption("Actions so far: " + ", ".join(game["meanings"][a] for a in game["actions"]))
