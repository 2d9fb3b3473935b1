"""Imagine: roll the world model out from a real start and scrub through imagined vs. real frames (paper Fig. 5).

One request per "Imagine" press; the response lives in `st.session_state`, and the scrubber (a fragment) only
re-renders from it, so moving through the frames makes no request.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from frontend import inspect_views as views
from frontend.api_client import BackendError, get_client
from frontend.widgets import checkpoint_picker, run_picker, runs_or_stop

ROLLOUT = "imagine_rollout"  # the last response, with the request that made it
STEP = "imagine_step"  # the scrubber position (the slider's key)

st.title("Imagine")
st.caption("Imagined trajectories of a checkpoint's world model from a real start, beside the real emulator "
           "under the same actions. Each frame shows the action that led to it, the predicted reward r̂ and "
           "discount γ̂.")

client = get_client()
runs = runs_or_stop(client)

# ---------------------------------------------------------------------------------------------- controls
run_ids = [r["run_id"] for r in runs]
col_run, col_ckpt, col_seed = st.columns([2, 1, 1])
run_id = run_picker(run_ids, col_run, "imagine_run")
checkpoint = checkpoint_picker(client, run_id, col_ckpt, "imagine_checkpoint")
seed = col_seed.number_input("Seed", min_value=0, max_value=2**31 - 1, value=0, step=1, key="imagine_seed")

col_start, col_k, col_h = st.columns([2, 1, 1])
start_kind = col_start.radio("Start", ["reset", "replay"], horizontal=True, key="imagine_start",
                             format_func=lambda k: {"reset": "Real reset + policy steps",
                                                    "replay": "Replay-buffer row"}[k])
if start_kind == "reset":
    offset = col_k.number_input("Policy steps", min_value=0, max_value=2000, value=0, step=1, key="imagine_k")
else:
    offset = col_k.number_input("Replay index", min_value=0, value=0, step=1, key="imagine_index")
policy_mode = st.radio("Actions", ["policy", "sequence"], horizontal=True, key="imagine_actions_mode",
                       format_func=lambda m: {"policy": "The agent's policy",
                                              "sequence": "An action sequence"}[m])
sequence_text = ""
if policy_mode == "sequence":
    sequence_text = st.text_input("Action sequence (comma-separated indices or names; the horizon is its length)",
                                  value="0, 0, 0, 0", key="imagine_sequence")
horizon = col_h.number_input("Horizon", min_value=1, max_value=views.MAX_HORIZON, value=16, step=1,
                             key="imagine_horizon", disabled=policy_mode == "sequence")
compare_real = start_kind == "reset"
if not compare_real:
    st.caption("A replay row has no emulator state: only the imagined frames are shown.")


def _meanings(run: str) -> list[str] | None:
    """The run's action meanings: from a rollout of this run already fetched, else one tiny rollout."""
    known: dict[str, list[str]] = st.session_state.setdefault("action_meanings", {})
    if run not in known:
        reply = client.imagine(run, {"checkpoint": checkpoint, "horizon": 1})
        known[run] = reply["action_meanings"]
    return known[run]


def _request() -> dict[str, Any]:
    """The /imagine body of the controls (raises ValueError for a bad action sequence)."""
    body: dict[str, Any] = {"checkpoint": checkpoint, "seed": int(seed), "compare_real": compare_real,
                            "start": views.start_body(start_kind, int(offset), int(offset)),
                            "horizon": int(horizon), "actions": None}
    if policy_mode == "sequence":
        meanings = _meanings(run_id) if views.needs_names(sequence_text) else None
        body["actions"] = views.parse_actions(sequence_text, meanings)
        body["horizon"] = len(body["actions"])
    return body


if st.button("Imagine", type="primary", key="imagine_fetch"):
    try:
        body = _request()
        with st.spinner("Imagining…"):
            rollout = client.imagine(run_id, body)
    except ValueError as exc:
        st.error(str(exc))
    except BackendError as exc:
        st.error(exc.message)
    else:
        st.session_state.setdefault("action_meanings", {})[run_id] = rollout["action_meanings"]
        st.session_state[ROLLOUT] = {"run_id": run_id, "request": body, "response": rollout,
                                     "gif": views.rollout_gif(rollout), "json": views.rollout_json(rollout)}
        st.session_state[STEP] = 0


# ---------------------------------------------------------------------------------------------- viewer
def _move(delta: int, last: int) -> None:
    st.session_state[STEP] = min(max(st.session_state.get(STEP, 0) + delta, 0), last)


@st.fragment
def viewer(state: dict[str, Any]) -> None:
    """The scrubber over a fetched rollout: re-renders from session state only (no request)."""
    rollout = state["response"]
    last = len(rollout["frames"]) - 1  # = horizon
    st.session_state.setdefault(STEP, 0)
    st.session_state[STEP] = min(st.session_state[STEP], last)
    prev_col, slider_col, next_col = st.columns([1, 12, 1], vertical_alignment="bottom")
    prev_col.button("◀", key="imagine_prev", on_click=_move, args=(-1, last), disabled=st.session_state[STEP] == 0)
    t = slider_col.slider("Step", min_value=0, max_value=last, key=STEP)
    next_col.button("▶", key="imagine_next", on_click=_move, args=(1, last), disabled=t == last)
    st.caption(f"Step {t} / {last}")

    frames_col, latent_col = st.columns([3, 2])
    with frames_col:
        left, right = st.columns(2)
        left.markdown("**Imagined**")
        left.image(views.upscale(views.decode_png(rollout["frames"][t])), width=256)
        left.markdown(views.step_annotation(rollout, t))
        if rollout.get("real"):
            right.markdown("**Real (same actions)**")
            real_caption = views.real_annotation(rollout, t)
            if real_caption is None:
                right.info("The real episode ended before this step.")
            else:
                right.image(views.upscale(views.decode_png(rollout["real"]["frames"][t])), width=256)
                right.markdown(real_caption)
    with latent_col:
        st.plotly_chart(views.latent_figure(rollout["latents"][t], f"latent z{t}"), key="imagine_latent")

    charts = st.columns(2)
    if rollout.get("real"):
        charts[0].plotly_chart(views.frame_diff_figure(rollout, t), key="imagine_diff")
    charts[1].plotly_chart(views.prediction_figure(rollout, t), key="imagine_predictions")

    name = f"{state['run_id']}_step{rollout['checkpoint_step']}_seed{rollout['seed']}"
    gif_col, json_col, _ = st.columns([1, 1, 3])
    gif_col.download_button("Download GIF", state["gif"], file_name=f"{name}.gif", mime="image/gif",
                            on_click="ignore", key="imagine_gif")
    json_col.download_button("Download JSON", state["json"], file_name=f"{name}.json", mime="application/json",
                             on_click="ignore", key="imagine_json")


state = st.session_state.get(ROLLOUT)
if state is None:
    st.info("Pick a start and press **Imagine**.")
elif (state["run_id"], state["request"]["checkpoint"]) != (run_id, checkpoint):  # only the picker's run is shown
    st.info(f"The last rollout was of `{state['run_id']}` ({views.checkpoint_name(state['request']['checkpoint'])}): "
            f"press **Imagine** for `{run_id}` ({views.checkpoint_name(checkpoint)}).")
else:
    rollout = state["response"]
    how = "policy" if rollout["policy"] else "given actions"
    st.subheader(f"{state['run_id']} · {rollout['game']} · checkpoint step {rollout['checkpoint_step']} · "
                 f"seed {rollout['seed']} · {how}")
    viewer(state)
