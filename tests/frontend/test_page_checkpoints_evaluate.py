"""The Checkpoints page evaluates a checkpoint: a real `twm eval` process on the live backend, its result listed."""

from __future__ import annotations

import time
from collections.abc import Callable

from streamlit.testing.v1 import AppTest

from frontend.api_client import get_client


def clean(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def test_evaluate_a_checkpoint_from_the_page(page_app: Callable[[str], AppTest], dashboard_env: str,
                                             debug_run_id: str) -> None:
    at = clean(page_app("app_pages/checkpoints.py").run())
    assert "No evaluations of this run's checkpoints yet" in " ".join(c.value for c in at.caption)
    at.selectbox(key="eval_step").set_value(100)
    at.number_input(key="eval_episodes").set_value(1)
    at.number_input(key="eval_seed").set_value(7)
    clean(next(b for b in at.button if b.label == "Evaluate").click().run())

    client, deadline = get_client(), time.monotonic() + 180
    while time.monotonic() < deadline:
        evaluations = client.evaluations(debug_run_id)
        if evaluations and evaluations[0]["state"] != "running":
            break
        time.sleep(0.5)
    assert [(e["step"], e["episodes"], e["seed"], e["state"]) for e in evaluations] == [(100, 1, 7, "finished")]

    clean(at.run())
    table = at.dataframe[-1].value
    assert list(table["checkpoint"]) == [100] and list(table["state"]) == ["finished"]
    assert float(table["score mean"].iloc[0]) == evaluations[0]["summary"]["score_mean"]
