"""The chosen run and checkpoint carry across pages (through the URL and the session), through `AppTest` of the
whole app against a REAL backend serving a copy of `debug_run` plus an older second copy of it.

A page never shows data of another run than its picker: a result fetched for one run is hidden once the picker
shows another, and a chosen run (or checkpoint) that no longer exists is said so and replaced by the newest.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from frontend.widgets import CHECKPOINT, RUN

APP = Path(__file__).parents[2] / "frontend" / "streamlit_app.py"
PageApp = Callable[[str], AppTest]

# every page that picks a run: (file, key of its run picker, key of its checkpoint picker or None)
PICKERS = [
    ("app_pages/imagine.py", "imagine_run", "imagine_checkpoint"),
    ("app_pages/attention.py", "attention_run", "attention_checkpoint"),
    ("app_pages/play.py", "play_run", "play_checkpoint"),
    ("app_pages/inspector.py", "inspector_run", "inspector_checkpoint"),
    ("app_pages/calibration.py", "calibration_run", None),
    ("app_pages/checkpoints.py", "ckpt_run", None),
]


@pytest.fixture(scope="module")
def older_run(runs_root: Path, debug_run_id: str) -> str:
    """A second run with the same checkpoints (a copy of the debug run), older, so it is not the default pick."""
    other = runs_root / f"{debug_run_id}-older"
    if not other.exists():
        shutil.copytree(runs_root / debug_run_id, other)
        for path in [other, *other.rglob("*")]:
            os.utime(path, (time.time() - 7200, time.time() - 7200))
    return other.name


def clean(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def picked(at: AppTest, run_key: str, checkpoint_key: str | None) -> tuple[str, int | str | None]:
    checkpoint = at.selectbox(key=checkpoint_key).value if checkpoint_key else None
    return at.selectbox(key=run_key).value, checkpoint


def test_the_chosen_run_and_checkpoint_open_every_page(dashboard_env: str, debug_run_id: str,
                                                       older_run: str) -> None:
    at = clean(AppTest.from_file(APP, default_timeout=120).run())  # Home
    clean(at.switch_page("app_pages/imagine.py").run())
    assert picked(at, "imagine_run", "imagine_checkpoint") == (debug_run_id, "latest")  # nothing chosen: newest
    clean(at.selectbox(key="imagine_run").set_value(older_run).run())
    clean(at.selectbox(key="imagine_checkpoint").set_value(100).run())
    assert at.query_params["run"] == older_run and at.query_params["ckpt"] == "100"

    for page, run_key, checkpoint_key in PICKERS[1:]:
        clean(at.switch_page(page).run())
        assert picked(at, run_key, checkpoint_key) == (older_run, 100 if checkpoint_key else None), page
    clean(at.switch_page("app_pages/runs.py").run())
    assert at.multiselect(key="run_pick").value == [older_run]

    # a page switch that leaves the URL without the run (a link to a page): the session still has it
    at.query_params.clear()
    clean(at.switch_page("app_pages/play.py").run())
    assert picked(at, "play_run", "play_checkpoint") == (older_run, 100)
    assert at.query_params["run"] == older_run and at.query_params["ckpt"] == "100"  # and the URL has it again

    # a run picked on the Runs page (its first pick) is the next page's run; its checkpoint starts at latest
    clean(at.switch_page("app_pages/runs.py").run())
    clean(at.multiselect(key="run_pick").set_value([debug_run_id, older_run]).run())
    assert at.session_state[RUN] == debug_run_id and CHECKPOINT not in at.session_state
    clean(at.switch_page("app_pages/attention.py").run())
    assert picked(at, "attention_run", "attention_checkpoint") == (debug_run_id, "latest")


def test_a_bookmark_opens_its_run_and_a_gone_one_falls_back(page_app: PageApp, dashboard_env: str,
                                                          debug_run_id: str, older_run: str,
                                                          runs_root: Path) -> None:
    at = page_app("app_pages/imagine.py")
    at.query_params.update({"run": older_run, "ckpt": "200"})
    clean(at.run())
    assert picked(at, "imagine_run", "imagine_checkpoint") == (older_run, 200)

    at = page_app("app_pages/play.py")
    at.query_params.update({"run": "deleted-run", "ckpt": "100"})
    at.run()
    assert not at.exception
    assert [w.value for w in at.warning] == [f"Run `deleted-run` no longer exists: showing `{debug_run_id}`."]
    # the checkpoint was one of the gone run: dropped with it, not carried over to the fallback
    assert picked(at, "play_run", "play_checkpoint") == (debug_run_id, "latest")
    assert at.query_params == {"run": debug_run_id, "ckpt": "latest"}

    at = page_app("app_pages/attention.py")
    at.query_params.update({"run": older_run, "ckpt": "999"})
    at.run()
    assert [w.value for w in at.warning] == [
        f"Checkpoint step 999 of run `{older_run}` no longer exists: showing the latest."]
    assert picked(at, "attention_run", "attention_checkpoint") == (older_run, "latest")

    # a run deleted while its page is open: said so at the next rerun, and the page moves to the newest run
    doomed = runs_root / f"{debug_run_id}-doomed"
    shutil.copytree(runs_root / older_run, doomed, ignore=shutil.ignore_patterns("replay"))
    for path in [doomed, *doomed.rglob("*")]:
        os.utime(path, (time.time() - 9000, time.time() - 9000))
    at = page_app("app_pages/checkpoints.py")
    at.query_params["run"] = doomed.name
    clean(at.run())
    assert at.selectbox(key="ckpt_run").value == doomed.name
    shutil.rmtree(doomed)
    at.run()
    assert [w.value for w in at.warning] == [f"Run `{doomed.name}` no longer exists: showing `{debug_run_id}`."]
    assert at.selectbox(key="ckpt_run").value == debug_run_id and f"**{debug_run_id}**" in at.markdown[0].value


def test_a_result_of_another_run_is_not_shown(page_app: PageApp, dashboard_env: str, debug_run_id: str,
                                              older_run: str) -> None:
    at = clean(page_app("app_pages/imagine.py").run())
    at.number_input(key="imagine_horizon").set_value(3)
    clean(at.button(key="imagine_fetch").click().run())
    assert len(at.get("image")) == 2 and debug_run_id in at.subheader[0].value
    clean(at.selectbox(key="imagine_run").set_value(older_run).run())
    assert not at.get("image") and not at.subheader
    assert at.info[0].value == (f"The last rollout was of `{debug_run_id}` (latest checkpoint): press **Imagine** "
                                f"for `{older_run}` (latest checkpoint).")
    clean(at.selectbox(key="imagine_run").set_value(debug_run_id).run())
    assert len(at.get("image")) == 2  # its own run again: the rollout is back

    at = clean(page_app("app_pages/play.py").run())
    clean(at.button(key="play_reset").click().run())
    assert at.metric[0].label == "Step"
    clean(at.selectbox(key="play_checkpoint").set_value(100).run())
    assert not at.metric and "press **Reset** to play" in at.info[0].value
