"""The Imagine, Attention and Play pages through AppTest against a REAL backend serving a copy of `debug_run`.

Fixtures (`dashboard_env`, `page_app`, `debug_run_id`) come from tests/frontend/conftest.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from frontend.api_client import BackendClient

PageApp = Callable[[str], AppTest]


def charts(at: AppTest) -> list[dict[str, Any]]:
    """The plotly figures on the page, as the JSON specs Streamlit sends to the browser."""
    return [json.loads(element.proto.spec) for element in at.get("plotly_chart")]


def chart(at: AppTest, title_prefix: str) -> dict[str, Any]:
    found = [fig for fig in charts(at) if fig["layout"].get("title", {}).get("text", "").startswith(title_prefix)]
    assert len(found) == 1, [fig["layout"].get("title") for fig in charts(at)]
    return found[0]


def markdown(at: AppTest) -> list[str]:
    return [element.value for element in at.markdown]


def no_errors(at: AppTest) -> AppTest:
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return at


@pytest.fixture
def imagine_calls(monkeypatch: pytest.MonkeyPatch, dashboard_env: str) -> list[dict[str, Any]]:
    """Every /imagine request body the pages send to the live backend (AppTest runs pages in this process)."""
    calls: list[dict[str, Any]] = []
    original = BackendClient.imagine

    def counting(self: BackendClient, run_id: str, body: dict[str, Any]) -> dict[str, Any]:
        calls.append(body)
        return original(self, run_id, body)

    monkeypatch.setattr(BackendClient, "imagine", counting)
    return calls


def test_imagine_fetches_once_and_scrubs_without_requests(page_app: PageApp, debug_run_id: str,
                                                          imagine_calls: list[dict[str, Any]]) -> None:
    at = no_errors(page_app("app_pages/imagine.py").run())
    assert at.selectbox(key="imagine_run").value == debug_run_id
    assert at.selectbox(key="imagine_checkpoint").options == ["latest", "step 200", "step 100"]
    at.number_input(key="imagine_horizon").set_value(6)
    at.number_input(key="imagine_k").set_value(3)
    no_errors(at.button(key="imagine_fetch").click().run())
    assert len(imagine_calls) == 1
    assert imagine_calls[0]["start"] == {"kind": "reset", "policy_steps": 3} and imagine_calls[0]["compare_real"]
    rollout = at.session_state["imagine_rollout"]["response"]
    assert rollout["horizon"] == 6 and len(rollout["start_policy_actions"]) == 3

    slider = at.slider(key="imagine_step")
    assert (slider.min, slider.max, slider.value) == (0, 6, 0)
    assert "Step 0 / 6" in [c.value for c in at.caption]
    c, k = rollout["latent_shape"]
    latent = chart(at, "latent z0")["data"][0]["z"]
    assert (len(latent), len(latent[0])) == (c, k)
    assert latent == rollout["latents"][0]

    for t in (4, 6, 1):
        no_errors(at.slider(key="imagine_step").set_value(t).run())
        assert f"Step {t} / 6" in [c.value for c in at.caption]
        shown = f"r̂ = {rollout['rewards'][t - 1]:+.3f} · γ̂ = {rollout['discounts'][t - 1]:.3f}"
        assert any(shown in text for text in markdown(at)), markdown(at)
        assert chart(at, f"latent z{t}")["data"][0]["z"] == rollout["latents"][t]
    no_errors(at.button(key="imagine_next").click().run())
    assert at.slider(key="imagine_step").value == 2
    no_errors(at.button(key="imagine_prev").click().run())
    assert at.slider(key="imagine_step").value == 1

    real = rollout["real"]
    assert chart(at, "Per-frame difference")["data"][0]["y"] == pytest.approx(real["frame_diffs"])
    assert len(at.get("image")) == 2  # imagined | real
    assert {b.proto.label for b in at.get("download_button")} == {"Download GIF", "Download JSON"}
    assert len(imagine_calls) == 1, "scrubbing must not send requests"


def test_imagine_action_sequence_by_name_and_replay_start(page_app: PageApp,
                                                          imagine_calls: list[dict[str, Any]]) -> None:
    at = no_errors(page_app("app_pages/imagine.py").run())
    at.radio(key="imagine_start").set_value("replay")
    at.radio(key="imagine_actions_mode").set_value("sequence").run()
    at.number_input(key="imagine_index").set_value(20)
    at.text_input(key="imagine_sequence").set_value("NOOP, 2, right")
    no_errors(at.button(key="imagine_fetch").click().run())
    sent = imagine_calls[-1]  # a first tiny rollout learnt the action names
    assert sent["actions"] == [0, 2, 2] and sent["horizon"] == 3 and not sent["compare_real"]
    assert sent["start"] == {"kind": "replay", "index": 20}
    rollout = at.session_state["imagine_rollout"]["response"]
    assert rollout["action_names"] == ["NOOP", "RIGHT", "RIGHT"] and rollout["real"] is None
    assert at.slider(key="imagine_step").max == 3
    assert len(at.get("image")) == 1  # no real column for a replay start

    at.text_input(key="imagine_sequence").set_value("0, JUMP")
    at.button(key="imagine_fetch").click().run()
    assert "unknown action 'JUMP'" in at.error[0].value


def test_attention_heatmap_has_layers_by_labelled_tokens(page_app: PageApp, dashboard_env: str) -> None:
    at = no_errors(page_app("app_pages/attention.py").run())
    at.number_input(key="attention_query").set_value(5)
    at.number_input(key="attention_layer").set_value(1)
    no_errors(at.button(key="attention_fetch").click().run())
    response = at.session_state["attention_result"]["response"]
    num_layers, num_heads, labels = response["num_layers"], response["num_heads"], response["labels"]
    names = [f"{label['modality']}{label['relative_step']}" for label in labels]
    assert names[-2:] == ["z0", "a0"] and "r-1" in names

    heatmap = chart(at, "Attention of a5")
    z = heatmap["data"][0]["z"]
    assert len(z) == num_layers and all(len(row) == len(labels) for row in z)
    assert heatmap["data"][0]["x"] == names
    assert heatmap["layout"]["xaxis"]["tickvals"] == names
    assert "color:#1f77b4" in heatmap["layout"]["xaxis"]["ticktext"][-2]  # z0 in blue
    assert "color:#d62728" in heatmap["layout"]["xaxis"]["ticktext"][-1]  # a0 in red

    figures = charts(at)
    per_head = [fig for fig in figures if len(fig["data"]) == num_heads and fig["data"][0]["y"][0] == "layer 0"]
    assert per_head and all(len(trace["z"]) == num_layers for trace in per_head[0]["data"])
    matrix = chart(at, "Layer 1:")
    assert len(matrix["data"]) == num_heads and len(matrix["data"][0]["z"][0]) == len(labels)


def test_play_steps_through_a_dream_session_deterministically(page_app: PageApp, dashboard_env: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    steps: list[dict[str, Any]] = []
    original = BackendClient.step_session

    def counting(self: BackendClient, session_id: str, count: int = 1, actions: list[int] | None = None) -> Any:
        reply = original(self, session_id, count, actions)
        steps.append({"actions": actions, "since": reply["since"], "points": len(reply["points"])})
        return reply

    forks: list[dict[str, Any]] = []
    original_fork = BackendClient.fork_session

    def counting_forks(self: BackendClient, session_id: str, body: dict[str, Any]) -> Any:
        reply = original_fork(self, session_id, body)
        forks.append({"step": body["step"], "action": body.get("action"), "points": len(reply["points"])})
        return reply

    monkeypatch.setattr(BackendClient, "step_session", counting)
    monkeypatch.setattr(BackendClient, "fork_session", counting_forks)
    at = no_errors(page_app("app_pages/play.py").run())
    assert not at.get("image")
    no_errors(at.button(key="play_reset").click().run())
    assert at.metric[0].label == "Step" and at.metric[0].value == "0"
    assert at.session_state["play_game"]["points"][0]["real"] is not None  # the real start frame too
    assert [b.label for b in at.button if b.key.startswith("play_action_")][:3] == ["NOOP", "FIRE", "RIGHT"]

    for n, action in enumerate([2, 3], start=1):
        no_errors(at.button(key=f"play_action_{action}").click().run())
        assert at.metric[0].value == str(n)
        # a press adopts the fork prefetched for it (no step): one fork per action at the previous step, and each
        # carried only its new point, never the history
        prefetched = [fork for fork in forks if fork["step"] == n - 1]
        assert sorted(fork["action"] for fork in prefetched) == list(range(len(prefetched))) and len(prefetched) >= 3
        assert all(fork["points"] == 1 for fork in prefetched) and steps == []
    no_errors(at.button(key="play_policy").click().run())
    assert at.metric[0].value == "3" and steps[-1]["actions"] is None
    game = at.session_state["play_game"]
    points = game["points"]
    assert [p["action"] for p in points[1:3]] == [2, 3]
    assert at.metric[1].value == f"{points[-1]['reward']:+.3f}"
    assert at.metric[3].value == f"{sum(p['reward'] for p in points[1:]):+.3f}"

    no_errors(at.button(key="play_undo").click().run())
    assert at.metric[0].value == "2" and at.session_state["play_game"]["points"] == points[:3]

    no_errors(at.button(key="play_reset").click().run())
    assert at.metric[0].value == "0"
    for action in [2, 3]:
        at.button(key=f"play_action_{action}").click().run()
    assert at.session_state["play_game"]["points"] == points[:3]  # same seed, same dream


@pytest.mark.parametrize("page", ["imagine.py", "attention.py", "play.py"])
def test_pages_explain_an_unreachable_backend(page: str, page_app: PageApp, unreachable_backend: str) -> None:
    at = page_app(f"app_pages/{page}").run()
    assert not at.exception
    assert "Backend not reachable" in at.error[0].value
