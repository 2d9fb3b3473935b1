"""The Home page through `AppTest` against a real backend."""

from __future__ import annotations

import httpx


def test_home_shows_backend_health_presets_and_games(dashboard_env, page_app):
    health = httpx.get(f"{dashboard_env}/api/health").json()
    at = page_app("app_pages/home.py").run()
    assert not at.exception
    assert at.title[0].value == "TWM dashboard"
    assert [s.value for s in at.success] == ["Backend online"]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Device"] == health["device"]
    assert health["runs_dir"] in " ".join(c.value for c in at.caption)
    expanders = " ".join(e.label for e in at.expander)
    assert "atari100k" in expanders and "debug" in expanders and "catch" in expanders
    text = " ".join(m.value for m in at.markdown)
    assert "Pong" in text and "MsPacman" in text


def test_home_says_how_to_start_an_unreachable_backend(unreachable_backend, page_app):
    at = page_app("app_pages/home.py").run()
    assert not at.exception
    assert "start it with `make run`" in at.error[0].value
