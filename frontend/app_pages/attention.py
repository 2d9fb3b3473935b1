"""Attention: where the dynamics model's action token looks while imagining (method.md §6.1, paper Fig. 6).

For the action token a_t of the chosen imagined step: a token × layer heat-map of the head-averaged attention over
the labelled key tokens (z blue, a red, r green), the raw per-head maps, and one layer's full matrix.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from frontend import inspect_views as views
from frontend.api_client import BackendError, get_client
from frontend.widgets import checkpoint_picker, run_picker, runs_or_stop

RESULT = "attention_result"

st.title("Attention")
st.caption("Attention weights of the action token a_t at an imagined step, per layer, over the key tokens in the "
           "Transformer-XL memory: z (latent state, blue), a (action, red), r (reward, green), labelled by their "
           "step relative to the query's.")

client = get_client()
runs = runs_or_stop(client)

# ---------------------------------------------------------------------------------------------- controls
col_run, col_ckpt, col_seed = st.columns([2, 1, 1])
run_id = run_picker([r["run_id"] for r in runs], col_run, "attention_run")
checkpoint = checkpoint_picker(client, run_id, col_ckpt, "attention_checkpoint")
seed = col_seed.number_input("Seed", min_value=0, max_value=2**31 - 1, value=0, step=1, key="attention_seed")

col_start, col_k, col_q, col_layer = st.columns([2, 1, 1, 1])
start_kind = col_start.radio("Start", ["reset", "replay"], horizontal=True, key="attention_start",
                             format_func=lambda k: {"reset": "Real reset + policy steps",
                                                    "replay": "Replay-buffer row"}[k])
if start_kind == "reset":
    offset = col_k.number_input("Policy steps", min_value=0, max_value=2000, value=0, step=1, key="attention_k")
else:
    offset = col_k.number_input("Replay index", min_value=0, value=0, step=1, key="attention_index")
query_step = col_q.number_input("Query step", min_value=0, max_value=views.MAX_HORIZON - 1, value=8, step=1,
                                key="attention_query")
layer = col_layer.number_input("Full matrix of layer", min_value=0, value=0, step=1, key="attention_layer",
                               help="Layers count from 0 (the backend names the range if this one is too high)")
policy_mode = st.radio("Actions", ["policy", "sequence"], horizontal=True, key="attention_actions_mode",
                       format_func=lambda m: {"policy": "The agent's policy",
                                              "sequence": "An action sequence (at least query step + 1 actions)"}[m])
sequence_text = ""
if policy_mode == "sequence":
    sequence_text = st.text_input("Action sequence (comma-separated indices or names)", value="0, " * 8 + "0",
                                  key="attention_sequence")


def _request() -> dict[str, Any]:
    """The /attention body of the controls (raises ValueError for a bad action sequence)."""
    body: dict[str, Any] = {"checkpoint": checkpoint, "seed": int(seed), "query_step": int(query_step),
                            "layer": int(layer), "start": views.start_body(start_kind, int(offset), int(offset))}
    if policy_mode == "sequence":
        meanings = st.session_state.get("action_meanings", {}).get(run_id)
        body["actions"] = views.parse_actions(sequence_text, meanings)
    return body


if st.button("Show attention", type="primary", key="attention_fetch"):
    try:
        body = _request()
        with st.spinner("Imagining with attention…"):
            response = client.attention(run_id, body)
    except ValueError as exc:
        st.error(str(exc))
    except BackendError as exc:
        st.error(exc.message)
    else:
        st.session_state[RESULT] = {"run_id": run_id, "request": body, "response": response}

# ---------------------------------------------------------------------------------------------- views
state = st.session_state.get(RESULT)
if state is None:
    st.info("Pick a start and a query step and press **Show attention**.")
    st.stop()
shown_checkpoint = state["request"]["checkpoint"]
if (state["run_id"], shown_checkpoint) != (run_id, checkpoint):  # only the picker's run is shown
    st.info(f"The last attention maps were of `{state['run_id']}` ({views.checkpoint_name(shown_checkpoint)}): "
            f"press **Show attention** for `{run_id}` ({views.checkpoint_name(checkpoint)}).")
    st.stop()

response = state["response"]
t = response["query_step"]
st.subheader(f"{state['run_id']} · checkpoint step {response['checkpoint_step']} · seed {response['seed']} · "
             f"query a{t}")
frame_col, info_col = st.columns([1, 3])
frame_col.image(views.upscale(views.decode_png(response["frame"])), width=192)
frame_col.caption(f"imagined z{t}")
with info_col:
    cols = st.columns(4)
    cols[0].metric("Action a_t", response["action_names"][-1] if response["action_names"] else "—")
    cols[1].metric("r̂_t", f"{response['reward']:+.3f}")
    cols[2].metric("γ̂_t", f"{response['discount']:.3f}")
    cols[3].metric("Key tokens", len(response["labels"]))
    legend = " ".join(f"<span style='color:{c}'>■ {m}</span>" for m, c in views.MODALITY_COLOURS.items())
    st.markdown(f"{legend} &nbsp; {response['num_layers']} layers × {response['num_heads']} heads; actions so far: "
                f"{', '.join(response['action_names'])}", unsafe_allow_html=True)
    contrast = st.toggle("Reference-viewer contrast, min(3·w, 1)", key="attention_contrast")

head_mean_tab, heads_tab, layer_tab = st.tabs(["Head mean", "Per head", "Full layer matrix"])
with head_mean_tab:
    st.plotly_chart(views.attention_figure(response, contrast), key="attention_heatmap")
with heads_tab:
    st.plotly_chart(views.attention_heads_figure(response, contrast), key="attention_heads")
with layer_tab:
    figure = views.layer_matrix_figure(response)
    if figure is None:
        st.info("Pick a layer and fetch again to see its full matrix.")
    else:
        st.plotly_chart(figure, key="attention_layer_matrix")
