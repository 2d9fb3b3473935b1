"""Inspector: one dream of a checkpoint, explored in the page — scrub, play, branch, sample futures, read attention.

The dream is a backend session (`/api/sessions`) with the real emulator alongside. All of its frames (and those of
its branches) reach the page once; the dream viewer component scrubs and plays them with no request per frame and
sends back only explicit actions: fork with another action, edit a latent cell, futures here, attention here.
Run, checkpoint, seed, start, horizon, step and branch live in the URL, so a bookmark reopens the same view
(branches are replayed from their recipe: same seed, same branch).
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from frontend import inspect_views as views
from frontend import inspector_views as iv
from frontend.api_client import BackendClient, BackendError, get_client
from frontend.components import dream_viewer
from frontend.widgets import checkpoint_picker, run_picker, runs_or_stop

STATE = "inspector"  # {"key", "meta", "branches": [{"id", "label", "recipe", "points"}], "step", "track", ...}

st.title("Inspector")
st.caption("A dream of the world model from a real start, beside the real game under the same actions. Scrub with "
           "←/→, play with space; the timeline marks where imagination leaves reality. Branch at any frame with "
           "another action or by clicking a latent cell; sample futures; read the attention of any token.")

client = get_client()
runs = runs_or_stop(client)
params = st.query_params


def _default(key: str, value: Any) -> None:
    """Seed a widget from the URL once (the widget owns its value afterwards)."""
    if key not in st.session_state:
        st.session_state[key] = value


def _int(name: str, default: int) -> int:
    try:
        return int(params.get(name, default))
    except (TypeError, ValueError):
        return default


_default("inspector_seed", _int("seed", 0))
_default("inspector_k", _int("k", 0))
_default("inspector_h", min(max(_int("h", 32), 1), 256))
col_run, col_ckpt, col_seed, col_k, col_h = st.columns([2, 1, 1, 1, 1])
run_id = run_picker([r["run_id"] for r in runs], col_run, "inspector_run")  # run and checkpoint: shared, in the URL
checkpoint = checkpoint_picker(client, run_id, col_ckpt, "inspector_checkpoint")
seed = int(col_seed.number_input("Seed", min_value=0, max_value=2**31 - 1, step=1, key="inspector_seed"))
policy_steps = int(col_k.number_input("Policy steps before", min_value=0, max_value=2000, step=1, key="inspector_k"))
horizon = int(col_h.number_input("Horizon", min_value=1, max_value=256, step=1, key="inspector_h"))
key = (run_id, str(checkpoint), seed, policy_steps, horizon)


def _dream(client: BackendClient) -> dict[str, Any]:
    body = {"run_id": run_id, "checkpoint": checkpoint, "seed": seed, "real": True, "steps": horizon,
            "start": views.start_body("reset", policy_steps)}
    session = client.create_session(body)
    meta = {k: session[k] for k in ("action_meanings", "latent_shape", "checkpoint_step", "num_layers", "num_heads",
                                    "tokens_per_step", "game")}
    main = {"id": session["id"], "label": "main", "recipe": "", "points": session["points"]}
    return {"key": key, "meta": meta, "branches": [main], "step": 0, "track": 0, "compare": None,
            "futures": None, "attention": None}


def _fork(client: BackendClient, state: dict[str, Any], parent: int, text: str) -> int:
    """Add the branch of recipe `text` forked from branch `parent` (or find it); its index."""
    for i, b in enumerate(state["branches"]):
        if b["recipe"] == text and b.get("parent") == parent:
            return i
    base = state["branches"][parent]
    fork = client.fork_session(base["id"], iv.fork_body(text, len(base["points"]) - 1))
    label = iv.recipe_label(text, state["meta"]["action_meanings"])
    state["branches"].append({"id": fork["id"], "label": label if parent == 0 else f"{base['label']} → {label}",
                              "recipe": text, "parent": parent, "points": fork["points"]})
    return len(state["branches"]) - 1


state = st.session_state.get(STATE)
try:
    if state is None or state["key"] != key or st.button("Dream again", key="inspector_refresh"):
        state = _dream(client)
        state["step"] = max(0, min(_int("step", 0), horizon))
        st.session_state[STATE] = state
        url_branch = params.get("branch")
        if url_branch and iv.parse_recipe(url_branch) is not None:
            state["track"] = _fork(client, state, 0, url_branch)
            state["compare"] = 0
except BackendError as exc:
    st.error(exc.message + (" — the session expired: press Dream again." if exc.status_code == 404 else ""))
    st.stop()

meta, branches = state["meta"], state["branches"]
meanings = meta["action_meanings"]
action = dream_viewer(iv.viewer_data(branches, meanings, meta["latent_shape"], state["step"], state["track"],
                                     state["compare"]), key="inspector_viewer")
if action is not None:
    track_index = next((i for i, b in enumerate(branches) if b["id"] == action.get("id")), 0)
    step = int(action.get("step", 0))
    state["step"], state["track"] = step, track_index
    try:
        if action["kind"] == "fork":
            new = _fork(client, state, track_index, iv.recipe(step, action=int(action["action"])))
            state["track"], state["compare"] = new, track_index
        elif action["kind"] == "edit":
            text = iv.recipe(step, latent=(int(action["categorical"]), int(action["category"])))
            new = _fork(client, state, track_index, text)
            state["track"], state["compare"] = new, track_index
        elif action["kind"] == "futures":
            state["futures"] = {"branch": track_index, "step": step}
        elif action["kind"] == "attention":
            state["attention"] = {"branch": track_index, "step": step}
    except BackendError as exc:
        st.error(exc.message)
    st.rerun()

selected = branches[state["track"]]
st.query_params.update({"run": run_id, "ckpt": str(checkpoint), "seed": str(seed), "k": str(policy_steps),
                        "h": str(horizon), "step": str(state["step"])})
if selected["recipe"] and selected.get("parent") == 0:
    st.query_params["branch"] = selected["recipe"]
elif "branch" in st.query_params:
    del st.query_params["branch"]

with st.expander(f"Branches ({len(branches)})", expanded=len(branches) > 1):
    st.table([{"branch": b["label"], "steps": len(b["points"]) - 1, "session": b["id"],
               "first divergence (pixel > 0.05)": iv.first_divergence(b["points"])} for b in branches])

# ------------------------------------------------------------------------------------------- checkpoint film
def _film(client: BackendClient, state: dict[str, Any]) -> list[dict[str, Any]]:
    """The main dream's start and actions imagined by every retained checkpoint (up to 8), oldest first."""
    main = state["branches"][0]
    actions = [p["action"] for p in main["points"][1:]]
    steps = iv.film_checkpoints([c["step"] for c in client.checkpoints(run_id)])
    tracks = []
    for step in steps:
        session = client.create_session({"run_id": run_id, "checkpoint": step, "seed": seed, "real": True,
                                         "start": views.start_body("reset", policy_steps), "actions": actions})
        tracks.append({"id": session["id"], "label": f"step {step}", "recipe": "", "points": session["points"]})
    return tracks


st.subheader("Checkpoint film: how the world model learned")
st.caption("The same start and the same actions (the main dream's) imagined by every retained checkpoint (up to 8), "
           "side by side at the same step, with each checkpoint's error against the real game.")
if st.button("Make the film", key="inspector_film_make"):
    try:
        state["film"] = _film(client, state)
    except BackendError as exc:
        st.error(exc.message)
if state.get("film"):
    film = state["film"]
    dream_viewer(iv.viewer_data(film, meanings, meta["latent_shape"], state["step"], len(film) - 1, film=True),
                 key="inspector_film")

# ------------------------------------------------------------------------------------------------ futures
futures = state.get("futures")
if futures is not None:
    branch = branches[futures["branch"]]
    st.subheader(f"Futures from step {futures['step']} of {branch['label']}")
    col_n, col_fh = st.columns(2)
    n = int(col_n.number_input("Futures", min_value=1, max_value=32, value=6, key="inspector_fn"))
    fh = int(col_fh.number_input("Steps", min_value=1, max_value=64, value=8, key="inspector_fh"))
    try:
        reply = client.session_futures(branch["id"], {"n": n, "horizon": fh, "step": futures["step"]})
    except BackendError as exc:
        st.error(exc.message)
    else:
        st.caption("Each row is one sampled future (policy actions, latents sampled at temperature 1); the last row "
                   "is the per-pixel standard deviation over the futures (white = most uncertain, scaled per step).")
        for i, row in enumerate(reply["frames"]):
            st.image([views.decode_png(f) for f in row], width=72, caption=[f"f{i} t+{t + 1}" for t in range(fh)])
        st.image([views.decode_png(s) for s in reply["std"]], width=72,
                 caption=[f"σ max {m:.2f}" for m in reply["std_max"]])

# ---------------------------------------------------------------------------------------------- attention
attention = state.get("attention")
if attention is not None:
    branch = branches[attention["branch"]]
    step = attention["step"]
    st.subheader(f"Attention at step {step} of {branch['label']}")
    col_tok, col_roll, col_heads, col_all = st.columns(4)
    tokens = ["a", "z", "r"] if meta["tokens_per_step"] == 3 else ["a", "z"]
    token = col_tok.radio("Query token", tokens, horizontal=True, key="inspector_token",
                          format_func=lambda t: {"a": f"a_{step}", "z": f"z_{step}", "r": f"r_{step}"}[t])
    rollout = col_roll.toggle("Attention rollout", key="inspector_rollout")
    per_head = col_heads.toggle("Per head", key="inspector_heads")
    whole = col_all.toggle("Whole dream, one layer", key="inspector_whole")
    query_step = step if token != "r" else step - 1

    def hovering(figure: Any, labels: list[dict[str, Any]]) -> Any:  # a key token's action, reward or frame
        return iv.with_token_hover(figure, labels, branch["points"], meanings, branch["id"])

    try:
        if step >= len(branch["points"]) - 1 and token != "r":
            raise BackendError(f"step {step} has no action yet: pick an earlier frame")
        reply = client.session_attention(branch["id"], {"step": query_step, "token": token, "rollout": rollout})
    except BackendError as exc:
        st.error(exc.message)
    else:
        reply["query_step"] = query_step
        st.caption("Hover a key token: an action or reward token shows its value, a z token its frame.")
        if rollout and reply["rollout"] is not None:
            shown = {"head_mean": reply["rollout"], "labels": reply["rollout_labels"], "query_step": query_step}
            st.caption("Attention rollout: after each layer, how much of the query's representation flows from each "
                       "token fed so far (residual mixing ½·A + ½·I, Abnar & Zuidema 2020).")
            st.plotly_chart(hovering(views.attention_figure(shown), shown["labels"]),
                            key="inspector_attention_rollout")
        elif per_head:
            st.plotly_chart(hovering(views.attention_heads_figure(reply), reply["labels"]),
                            key="inspector_attention_heads")
        else:
            st.plotly_chart(hovering(views.attention_figure(reply), reply["labels"]), key="inspector_attention")
    if whole:
        layer = int(st.number_input("Layer", min_value=0, max_value=meta["num_layers"] - 1, value=0,
                                    key="inspector_layer"))
        try:
            overview = client.session_attention_overview(branch["id"], layer, token)
        except BackendError as exc:
            st.error(exc.message)
        else:
            st.plotly_chart(iv.overview_figure(overview, branch["points"], meanings, branch["id"]),
                            key="inspector_overview")
