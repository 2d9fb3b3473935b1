"""The Calibration page through AppTest against a REAL backend serving a copy of `debug_run`."""

from __future__ import annotations

import json
from collections.abc import Callable

from streamlit.testing.v1 import AppTest

PageApp = Callable[[str], AppTest]


def test_calibration_per_checkpoint(page_app: PageApp, dashboard_env: str, debug_run_id: str) -> None:
    at = page_app("app_pages/calibration.py")
    at.query_params["run"] = debug_run_id
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.multiselect(key=f"calibration_ckpts_{debug_run_id}").value == [100, 200]
    rows = at.table[0].value
    assert list(rows["checkpoint"]) == [100, 200] and (rows["steps"] > 0).all()
    figures = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    titles = [f["layout"]["title"]["text"] for f in figures]
    assert titles[0].startswith("Reward") and titles[1].startswith("Discount")
    assert [t["name"] for t in figures[0]["data"]] == ["perfect", "step 100", "step 200"]
    at.multiselect(key=f"calibration_ckpts_{debug_run_id}").set_value([200]).run()
    assert list(at.table[0].value["checkpoint"]) == [200]
