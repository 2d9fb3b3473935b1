"""`/docs` and `/redoc` work offline: every script, stylesheet and icon they load is served by the backend itself."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from backend.main import create_app
from backend.settings import Settings

_ASSET = re.compile(r"""(?:src|href)\s*=\s*['"]([^'"]+)['"]|(?:url|spec-url)\s*[:=]\s*['"]([^'"]+)['"]""")


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(runs_dir=tmp_path / "runs", device="cpu", api_token="secret"))) as c:
        yield c


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_only_local_assets(client: TestClient, page: str) -> None:
    response = client.get(page)
    assert response.status_code == 200
    html = response.text
    external = re.findall(r"https?://[^'\"\s)]+", html)
    assert not external, f"{page} refers to another host: {external}"
    assets = [a or b for a, b in _ASSET.findall(html)]
    assert any(a.endswith(".js") for a in assets), f"{page}: no script found in {assets}"
    for asset in assets:  # the scripts, styles, favicon and the OpenAPI schema, all without a token
        assert asset.startswith("/"), asset
        served = client.get(asset)
        assert served.status_code == 200, f"{page} needs {asset}: {served.status_code}"
        assert len(served.content) > 50, asset


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_forbid_other_hosts(client: TestClient, page: str) -> None:
    policy = client.get(page).headers["content-security-policy"]
    assert "default-src 'self'" in policy and "img-src 'self' data:" in policy
    assert "content-security-policy" not in client.get("/api/health").headers  # the API's answers are left alone
